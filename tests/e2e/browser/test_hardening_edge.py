"""Issue #11, the signalling edge: hostile frames, floods, sockets that never read, foreign origins.

Every test talks to a real server (in this process, or `basement serve` as a child process where
the finding was a crash) over real sockets; rate limits run on a frozen clock so counts are exact.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.support.browser import Browser

# --- 5. the page does not capture media without a click, and runs under its CSP -------------------
_WATCH_PAGE = """
window.__gum = 0;
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
const realGum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (c) => { window.__gum += 1; return realGum(c); };
"""


@pytest.mark.timeout(120)
async def test_autojoin_link_waits_for_a_click_and_the_page_obeys_its_csp(server):
    url = f"{server.url}/?{urlencode({'room': 'click', 'name': 'n', 'autojoin': '1', 'video': '320x240'})}"
    async with Browser(url) as b:
        await b.add_init_script(_WATCH_PAGE)
        await b.navigate()
        await b.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        assert await b.evaluate("[window.basement.state, window.__gum]") == ["idle", 0]
        assert server.rooms.participants == {}  # not even the signalling socket joined
        await b.click("#join-button")
        await b.wait_for("window.basement.state === 'joined' && !!window.basement.published.audio")
        assert await b.evaluate("window.__gum") == 1
        assert await b.evaluate("window.__csp") == []
