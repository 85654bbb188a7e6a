"""SIP messages (RFC 3261 §7, §20, §25): a strict parser and the serializer of what the SIP service
(docs/sip.md) receives and sends.

Strict: a message whose start line, headers or body break the grammar is refused with `SipError`,
which names the fault and, for a request that got far enough to be answered, the status to answer
it with (400, 413 for one too large, 505 for a version other than SIP/2.0). Bounded: a message of
at most MAX_MESSAGE bytes, at most MAX_HEADERS header fields, each line at most MAX_LINE. What the
service reads of a message is parsed here once (`Via`, `From`/`To`, `CSeq`, `Content-Length`), so
nothing later meets a malformed value.

Accepted beyond the letter of the grammar, as every deployed stack is: header names in any case,
their compact forms (`v:`, `f:`, `i:` …), folded header lines, leading CRLFs before the start line
(§7.5), and a body longer than Content-Length on UDP (cut to it, §18.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

MAX_MESSAGE = 65_535  # a UDP datagram's payload at most; stream transports and WebSocket get no more
MAX_HEADERS = 100
MAX_LINE = 8_192
MAX_BODY = 16_384  # SDP, DTMF INFO: a few hundred bytes; nothing Basement takes is larger
VERSION = "SIP/2.0"

# §7.3.3 compact forms (and RFC 3515's, RFC 3265's) -> the full name
COMPACT = {"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
           "c": "Content-Type", "e": "Content-Encoding", "s": "Subject", "k": "Supported", "o": "Event",
           "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By", "x": "Session-Expires"}
_CANONICAL = {n.lower(): n for n in (*COMPACT.values(), "CSeq", "Max-Forwards", "WWW-Authenticate",
                                     "Authorization", "Proxy-Authenticate", "Proxy-Authorization", "Allow",
                                     "Accept", "User-Agent", "Server", "Expires", "Record-Route", "Route",
                                     "Require", "Unsupported", "Retry-After", "Warning", "Reason")}
REQUIRED_IN_REQUESTS = ("Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards")  # §8.1.1
REQUIRED_IN_RESPONSES = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) ([^\r\n]*)")
_CSEQ = re.compile(r"([0-9]{1,10})\s+(" + _TOKEN.pattern + r")")
_SENT_BY = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::(?P<port>[0-9]{1,5}))?")
_URI_HOST = _SENT_BY
_PARAM_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")  # a token, or an IPv6 address (received=2001:db8::1)
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_USER_SAFE = "-_.!~*'()&=+$,;?/"  # what a user part carries unescaped (§25.1: unreserved, user-unreserved)


class SipError(ValueError):
    """A message that breaks the grammar or a limit. `status`: what to answer a request with."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def canonical(name: str) -> str:
    """A header name as this module keys it: the full form of a compact one, known names in their
    usual case (others as they came, compared case-insensitively)."""
    low = name.lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name)


@dataclass(frozen=True)
class SipUri:
    """sip:/sips: URI (§19.1): `user` percent-decoded, `host` lower-cased (IPv6 with brackets)."""

    scheme: str
    user: str | None
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}" + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        user = f"{quote(self.user, safe=_USER_SAFE)}@" if self.user is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{self.host}{port}{params}"


def parse_uri(text: str, tel: bool = False) -> SipUri:
    """A sip: or sips: URI; with `tel`, also a tel: URI (RFC 3966: what a PSTN trunk puts in From),
    as a SipUri whose user is the number and whose host is empty."""
    scheme, sep, rest = text.partition(":")
    if tel and sep and scheme.lower() == "tel":
        number, *raw = rest.split(";")
        if not number or not re.fullmatch(r"\+?[0-9A-Fa-f*#().\-]+", number):
            raise SipError(f"malformed tel: URI {text[:80]!r}")
        return SipUri("tel", number, "", None, _uri_params(raw, text))
    if not sep or scheme.lower() not in ("sip", "sips"):
        raise SipError(f"unsupported URI {text[:80]!r}: only sip: and sips: URIs", 416)
    rest, _, _headers = rest.partition("?")  # (URI headers: not used, dropped)
    userinfo, at, hostpart = rest.rpartition("@")
    hostport, *raw_params = hostpart.split(";")
    user = None
    if at:
        userpart = userinfo.partition(":")[0]  # (a password in a URI: never used, §19.1.1)
        if not userpart or not _USER.fullmatch(userpart):
            raise SipError(f"malformed user part in URI {text[:80]!r}")
        try:
            user = unquote(userpart, errors="strict")
        except UnicodeDecodeError:
            raise SipError(f"user part of URI {text[:80]!r} is not UTF-8") from None
    m = _URI_HOST.fullmatch(hostport)
    if not m:
        raise SipError(f"malformed host in URI {text[:80]!r}")
    port = _port(m.group("port"), text)
    return SipUri(scheme.lower(), user, m.group("host").lower(), port, _uri_params(raw_params, text))


def _uri_params(raw: list[str], text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for p in raw:
        k, eq, v = p.partition("=")
        if not k or not _TOKEN.fullmatch(k) or (eq and not v):
            raise SipError(f"malformed URI parameter {p[:40]!r} in {text[:80]!r}")
        params[k.lower()] = v if eq else None
    return params


def _port(value: str | None, where: str) -> int | None:
    if value is None:
        return None
    port = int(value)
    if not 0 < port < 65536:
        raise SipError(f"port {value} out of range in {where[:80]!r}")
    return port


@dataclass(frozen=True)
class NameAddr:
    """A From/To/Contact value (§20.10): display name, URI, and its parameters (`tag` …)."""

    display: str | None
    uri: SipUri
    params: dict[str, str | None]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = '"' + self.display.replace("\\", "\\\\").replace('"', '\\"') + '" ' if self.display else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{display}<{self.uri}>{params}"


def parse_name_addr(value: str, header: str) -> NameAddr:
    text = value.strip()
    display: str | None = None
    if text.startswith('"'):
        end, chars, i = None, [], 1
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                chars.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                end = i
                break
            chars.append(ch)
            i += 1
        if end is None:
            raise SipError(f"{header}: unterminated display name")
        display, text = "".join(chars), text[end + 1:].lstrip()
        if not text.startswith("<"):
            raise SipError(f"{header}: a display name must be followed by <URI>")
    if "<" in text:
        before, _, after = text.partition("<")
        if before.strip() and display is None:
            tokens = before.split()
            if not all(_TOKEN.fullmatch(t) for t in tokens):
                raise SipError(f"{header}: malformed display name {before.strip()[:40]!r}")
            display = " ".join(tokens)
        uri_text, close, rest = after.partition(">")
        if not close:
            raise SipError(f"{header}: missing '>'")
    else:
        # addr-spec: the URI's own parameters cannot be told from the header's, so (§20) they are the header's
        uri_text, _, rest = text.partition(";")
        rest = ";" + rest if rest else ""
    try:
        uri = parse_uri(uri_text.strip(), tel=True)
    except SipError as e:
        raise SipError(f"{header}: {e.reason}") from None
    params = _params(rest, header)
    return NameAddr(display or None, uri, params)


def _params(text: str, header: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if not text.startswith(";"):
        raise SipError(f"{header}: unexpected {text[:40]!r}")
    for p in text[1:].split(";"):
        k, eq, v = (s.strip() for s in p.partition("="))
        if not k or not _TOKEN.fullmatch(k) or (eq and not v):
            raise SipError(f"{header}: malformed parameter {p.strip()[:40]!r}")
        if v.startswith('"'):
            if len(v) < 2 or not v.endswith('"'):
                raise SipError(f"{header}: unterminated quoted parameter {k}")
        elif v and not _PARAM_VALUE.fullmatch(v):
            raise SipError(f"{header}: malformed value of parameter {k}")
        params[k.lower()] = v if eq else None
    return params


@dataclass(frozen=True)
class Via:
    """One Via value (§20.42): transport, sent-by and parameters (`branch`, `received`, `rport`)."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {self.host}{port}{params}"


def parse_via(value: str) -> Via:
    proto, _, rest = value.strip().partition(" ")
    parts = proto.split("/")
    if len(parts) != 3 or parts[0].upper() != "SIP" or parts[1] != "2.0" or not _TOKEN.fullmatch(parts[2]):
        raise SipError(f"Via: malformed sent-protocol {proto[:40]!r}")
    sent_by, _, params = rest.strip().partition(";")
    m = _SENT_BY.fullmatch(sent_by.strip())
    if not m:
        raise SipError(f"Via: malformed sent-by {sent_by.strip()[:60]!r}")
    return Via(parts[2].upper(), m.group("host"), _port(m.group("port"), "Via"), _params(";" + params if params
                                                                                        else "", "Via"))


def split_values(value: str) -> list[str]:
    """A header's comma-separated values, commas inside quotes or <…> not splitting."""
    out, cur, quoted, angle, escaped = [], [], False, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch == "," and not quoted and not angle:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    if any(not v for v in out):
        raise SipError("an empty value in a comma-separated header")
    return out


class Headers:
    """Header fields in order, looked up by name in any case (compact forms as their full name)."""

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self.fields: list[tuple[str, str]] = [(canonical(n), v) for n, v in fields]

    def get(self, name: str) -> str | None:
        key = canonical(name).lower()
        return next((v for n, v in self.fields if n.lower() == key), None)

    def all(self, name: str) -> list[str]:
        key = canonical(name).lower()
        return [v for n, v in self.fields if n.lower() == key]

    def add(self, name: str, value: str) -> None:
        self.fields.append((canonical(name), value))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


@dataclass
class Message:
    headers: Headers
    body: bytes
    # read once by `parse` (request) or `build` (what we send)
    vias: list[Via]
    from_: NameAddr
    to: NameAddr
    call_id: str
    cseq: int
    cseq_method: str

    def to_bytes(self) -> bytes:
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def start_line(self) -> str:
        raise NotImplementedError


@dataclass
class Request(Message):
    method: str = ""
    uri: SipUri | None = None
    max_forwards: int = 70

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {VERSION}"


@dataclass
class Response(Message):
    status: int = 0
    reason: str = ""

    def start_line(self) -> str:
        return f"{VERSION} {self.status} {self.reason}"


def is_keepalive(data: bytes) -> bool:
    """A CRLF keep-alive (RFC 5626 §3.5.1): CRLF or CRLFCRLF, answered (on streams) or ignored."""
    return data in (b"\r\n", b"\r\n\r\n")


def parse(data: bytes, stream: bool = False) -> Request | Response:
    """One message. `stream`: from TCP, TLS or WebSocket, where Content-Length is required and the
    body must be exactly that long (the framing found it); on UDP a longer body is cut to it."""
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message of {len(data)} bytes: at most {MAX_MESSAGE}", 513)
    data = data.lstrip(b"\r\n")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipError("no empty line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("headers are not UTF-8") from None
    lines = text.split("\r\n")
    if any(len(line) > MAX_LINE for line in lines):
        raise SipError(f"a header line longer than {MAX_LINE} characters")
    if any("\r" in ln or "\n" in ln or "\0" in ln for ln in lines):
        raise SipError("a bare CR, LF or NUL in the headers")
    start, raw = lines[0], lines[1:]
    fields: list[tuple[str, str]] = []
    for line in raw:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipError("a continuation line before any header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN.fullmatch(name):
            raise SipError(f"malformed header line {line[:60]!r}")
        fields.append((name, value.strip(" \t")))
        if len(fields) > MAX_HEADERS:
            raise SipError(f"more than {MAX_HEADERS} header fields")
    headers = Headers(fields)
    if start.startswith("SIP/"):
        m = _STATUS_LINE.fullmatch(start)
        if not m:
            raise SipError(f"malformed status line {start[:80]!r}")
        common = _common(headers, REQUIRED_IN_RESPONSES)
        body = _body(headers, body, stream)
        return Response(headers=headers, body=body, **common, status=int(m.group(1)), reason=m.group(2))
    parts = start.split(" ")
    if len(parts) != 3:
        raise SipError(f"malformed request line {start[:80]!r}")
    method, uri_text, version = parts
    if not _TOKEN.fullmatch(method):
        raise SipError(f"malformed method {method[:40]!r}")
    if version != VERSION:
        raise SipError(f"unsupported version {version[:20]!r}: only {VERSION}", 505)
    uri = parse_uri(uri_text)
    common = _common(headers, REQUIRED_IN_REQUESTS)
    if common["cseq_method"] != method:
        raise SipError(f"CSeq method {common['cseq_method']} does not match the request's {method}")
    mf = headers.get("Max-Forwards") or ""
    if not mf.isascii() or not mf.isdigit() or int(mf) > 255:
        raise SipError(f"Max-Forwards: {mf[:20]!r} is not 0-255")
    body = _body(headers, body, stream)
    return Request(headers=headers, body=body, **common, method=method, uri=uri, max_forwards=int(mf))


def _common(headers: Headers, required: tuple[str, ...]) -> dict:
    for name in required:
        if headers.get(name) is None:
            raise SipError(f"missing {name} header")
    for name in ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"):
        if len(headers.all(name)) > 1:
            raise SipError(f"more than one {name} header")
    vias = [parse_via(v) for value in headers.all("Via") for v in split_values(value)]
    from_, to = parse_name_addr(headers.get("From") or "", "From"), parse_name_addr(headers.get("To") or "", "To")
    call_id = headers.get("Call-ID") or ""
    if not call_id or len(call_id) > 256 or any(ch.isspace() for ch in call_id):
        raise SipError("Call-ID: empty, longer than 256 characters or with spaces")
    m = _CSEQ.fullmatch(headers.get("CSeq") or "")
    if not m or int(m.group(1)) >= 2**31:
        raise SipError(f"CSeq: {(headers.get('CSeq') or '')[:40]!r} is not '<number below 2^31> <method>'")
    return {"vias": vias, "from_": from_, "to": to, "call_id": call_id, "cseq": int(m.group(1)),
            "cseq_method": m.group(2)}


def _body(headers: Headers, body: bytes, stream: bool) -> bytes:
    cl = headers.get("Content-Length")
    if cl is None:
        if stream:
            raise SipError("missing Content-Length (required over TCP, TLS and WebSocket)")
        length = len(body)
    elif not cl.isascii() or not cl.isdigit() or len(cl) > 6:
        raise SipError(f"Content-Length: {cl[:20]!r} is not a number")
    else:
        length = int(cl)
    if length > MAX_BODY:
        raise SipError(f"a body of {length} bytes: at most {MAX_BODY}", 413)
    if len(body) < length or (stream and len(body) != length):
        raise SipError(f"Content-Length {length} but the body has {len(body)} bytes")
    return body[:length]


def response(request: Request, status: int, reason: str, to_tag: str | None = None,
             headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
             source: tuple[str, int] | None = None) -> Response:
    """The answer to `request` (§8.2.6.2): its Via, From, Call-ID and CSeq; its To, with `to_tag`
    added unless it has one (a 100 Trying gets none). `source`: where the request came from, named
    in the top Via as `received` (when it is not the Via's host, §18.2.1) and `rport` (when the Via
    asks for it, RFC 3581), so that a phone behind a NAT learns its outside address."""
    to = request.to
    if to_tag is not None and to.tag is None:
        to = NameAddr(to.display, to.uri, {**to.params, "tag": to_tag})
    vias = [("Via", v) for v in request.headers.all("Via")]
    if source is not None and request.vias:
        top = request.vias[0]
        params = dict(top.params)
        if top.host.strip("[]") != source[0]:
            params["received"] = source[0]
        if "rport" in params:
            params["rport"] = str(source[1])
        if params != top.params:
            vias = [("Via", str(Via(top.transport, top.host, top.port, params))),
                    *(("Via", str(v)) for v in request.vias[1:])]
    h = Headers([*vias, ("From", request.headers.get("From") or ""),
                 ("To", str(to) if to is not request.to else request.headers.get("To") or ""),
                 ("Call-ID", request.call_id), ("CSeq", f"{request.cseq} {request.cseq_method}"), *headers])
    return Response(headers=h, body=body, vias=request.vias, from_=request.from_, to=to, call_id=request.call_id,
                    cseq=request.cseq, cseq_method=request.cseq_method, status=status, reason=reason)
