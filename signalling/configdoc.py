"""Renders docs/configuration.md from the Settings object, so the two cannot drift apart.

`python -m signalling.configdoc > docs/configuration.md`; a test fails when the file is stale.
"""

from __future__ import annotations

import dataclasses

from signalling.config import ENV_PREFIX, GROUPS, SUBCOMMAND_GROUPS, Settings, group_fields

HEADER = """# Configuration

Every Basement process reads one settings object. Each setting can be given, in increasing
priority, as its default, as an environment variable `BASEMENT_<NAME>`, or as a command-line flag
`--name` (for example `basement serve --port 9000` or `BASEMENT_PORT=9000 basement serve`).
Lists are comma-separated; booleans accept `true/false`, `1/0`, `yes/no`, `on/off`.
An invalid value stops the process with a message naming the setting.

Settings come in groups, and each subcommand reads only the groups it uses (table below): it offers
flags for those alone (`basement sfu --help` lists no sign-in or chain settings, and `basement sfu
--grant-ttl-s 5` is an error) and takes only their environment variables, so one environment shared
by every pod of a cluster is fine; the settings of other groups keep their defaults.

Security defaults: everything binds 127.0.0.1; there are no default secrets — the admin API is off
until `admin_key` is set, and an empty `grant_secret` means a random key per process (fine for one
process; a cluster needs the same secret everywhere).

Secrets (`grant_secret`, `admin_key`, `writer_key`) are never command-line flags: any local user can
read a process's arguments (`ps`, `/proc/<pid>/cmdline`) and shells keep them in history. Give them
as the environment variable, or as a file (`--admin-key-file PATH` or `BASEMENT_ADMIN_KEY_FILE=PATH`;
surrounding whitespace is stripped). `--admin-key VALUE` stops the process with that explanation.
"""


def readers(group: str) -> list[str]:
    """The subcommands that read a settings group, as `basement …` command lines."""
    return [f"`basement {cmd}`" for cmd, groups in SUBCOMMAND_GROUPS.items() if group in groups]


def _matrix() -> list[str]:
    cmds = list(SUBCOMMAND_GROUPS)
    lines = ["## Which subcommand reads which settings", "",
             "| settings | " + " | ".join(f"`{c}`" for c in cmds) + " |",
             "|---|" + "---|" * len(cmds)]
    for g in GROUPS:
        marks = ["✓" if g in SUBCOMMAND_GROUPS[c] else "" for c in cmds]
        lines.append(f"| [{g}](#{g}) | " + " | ".join(marks) + " |")
    return lines


def render() -> str:
    fields = dataclasses.fields(Settings)
    out = [HEADER, *_matrix()]
    for g, title in GROUPS.items():
        who = readers(g)
        out += ["", f"## {g}", "", f"{title[0].upper()}{title[1:]}. Read by {', '.join(who) or 'no subcommand'}.",
                "", "| flag | environment | default | meaning |", "|---|---|---|---|"]
        for f in group_fields([g]):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if isinstance(default, list):
                default = ",".join(default)
            shown = f"`{default}`" if default not in ("", None) else "(empty)"
            flag = "--" + f.name.replace("_", "-")
            env = f"`{ENV_PREFIX}{f.name.upper()}`"
            if f.metadata.get("secret") and any(h.name == f.name + "_file" for h in fields):
                flag = "(environment only)"
            elif f.metadata.get("secret"):
                flag += "-file"
                env += f" or `{ENV_PREFIX}{f.name.upper()}_FILE`"
            shown_flag = flag if flag.startswith("(") else f"`{flag}`"
            out.append(f"| {shown_flag} | {env} | {shown} | {f.metadata.get('help', '')} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
