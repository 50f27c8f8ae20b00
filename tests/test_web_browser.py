"""The web client in a real headless Chromium against a real chaton server.

Two browser pages (two accounts) and one TLS IRC client talk in a room and privately;
history appears when a page opens a room; unread counts move; hostile text stays text;
an admin bans a user from the panel and that user's page shows why; after a real server
restart (same port, same data directory) both pages come back and show what they missed.

Chromium trusts the test server by pinning its key (``--ignore-certificate-errors-spki-list``
with the SHA-256 of the certificate's SubjectPublicKeyInfo), not by ignoring certificate
errors in general. Screenshots of the main screens go to ``test-artifacts/web/``.

The module skips when Playwright or ``/usr/bin/chromium`` is missing, except under
``CI=true``, where it fails: CI can never pass by skipping.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import REPO, CertFiles, IrcClient, RunningServer, add_account

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "web"
PW = "correct horse battery"
TIMEOUT_MS = 10_000
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_LINK = "javascript:alert(document.domain)"
SAFE_LINK = "https://example.com/docs?a=1"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return "/usr/bin/chromium is not installed (Debian: apt-get install chromium)"
    return None


_WHY = _missing()
if _WHY is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {_WHY}", pytrace=False)
    pytest.skip(_WHY, allow_module_level=True)

from playwright.sync_api import (  # noqa: E402
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

pytestmark = pytest.mark.timeout(120)


def spki_pin(cert_file: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the server certificate, as Chromium pins."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright, certs: CertFiles, tmp_path: Path) -> Iterator[BrowserContext]:
    """Chromium with a fresh profile, trusting only the test server's pinned key."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--ignore-certificate-errors-spki-list={spki_pin(certs.cert_file)}",
        ],
        ignore_https_errors=False,
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


class Servers:
    """One chaton server at a time on one port and data directory, restartable."""

    def __init__(self, start: Callable[..., RunningServer]) -> None:
        self._start = start
        self.current = start()
        self.port = self.current.port

    def stop(self) -> None:
        self.current.stop()

    def start(self) -> RunningServer:
        self.current = self._start(port=self.port)
        return self.current


class Watched:
    """A page with every dialog, page error and CSP complaint recorded (none may happen)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, msg: ConsoleMessage) -> None:
        text = msg.text
        offline = "WebSocket" in text or "ERR_INTERNET_DISCONNECTED" in text  # the restart
        if "Content Security Policy" in text or (msg.type == "error" and not offline):
            self.errors.append(f"console {msg.type}: {text}")

    def clean(self) -> None:
        assert not self.dialogs, f"a dialog fired: {self.dialogs}"
        assert not self.errors, f"the page complained: {self.errors}"


def open_app(context: BrowserContext, server: RunningServer) -> Watched:
    page = context.new_page()
    watched = Watched(page)
    page.goto(f"https://127.0.0.1:{server.port}/")
    expect(page.get_by_role("heading", name="Sign in to chat")).to_be_visible()
    return watched


def sign_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-nick")).to_have_text(name)
    expect(page.locator("body")).to_have_attribute("data-status", "online")


def join(page: Page, room: str) -> None:
    page.get_by_role("button", name="Join or create a room").click()
    page.get_by_label("Room name").fill(room)
    page.get_by_label("Room name").press("Enter")
    expect(page.locator("#conv-title")).to_have_text(room)


def say(page: Page, text: str) -> None:
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")


def conv_button(page: Page, name: str) -> Any:
    return page.locator(f'#sidebar button.conv[data-conv="{name}"]')


def message(page: Page, text: str | re.Pattern[str]) -> Any:
    return page.locator("#messages article.msg .text", has_text=text)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled")


def test_two_people_a_client_an_admin_and_a_restart(
    start_server: Callable[..., RunningServer], browser: BrowserContext
) -> None:
    servers = Servers(start_server)
    settings = servers.current.settings
    add_account(settings, "alice", PW, admin=True)
    add_account(settings, "bob", PW)
    server = servers.current

    # A TLS IRC client speaks first: what it said is history when the pages open the room.
    dave = server.client("dave").join("#team")
    for line in ("hello from before", XSS_IMG, f"try {XSS_LINK} now", f"read {SAFE_LINK}"):
        dave.send(f"PRIVMSG #team :{line}")
    dave.sync()

    a = open_app(browser, server)
    alice = a.page
    shot(alice, "login")
    sign_in(alice, "alice", PW)
    join(alice, "#team")
    expect(message(alice, "hello from before")).to_be_visible()
    expect(message(alice, "read https://example.com")).to_be_visible()

    # Hostile text is text: no <img>, no dialog, the javascript: URL is no link.
    expect(message(alice, XSS_IMG)).to_have_count(1)
    assert alice.locator("#messages img").count() == 0
    assert alice.locator('img[src="x"]').count() == 0
    links = alice.locator("#messages a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", SAFE_LINK)
    expect(links).to_have_attribute("rel", "noopener noreferrer")
    expect(links).to_have_attribute("target", "_blank")
    expect(message(alice, XSS_LINK)).to_have_count(1)
    assert alice.locator('a[href^="javascript"]').count() == 0

    b = open_app(browser, server)
    bob = b.page
    sign_in(bob, "bob", PW)
    join(bob, "#team")
    expect(message(bob, "hello from before")).to_be_visible()
    join(bob, "#random")  # bob now looks at #random; #team gathers unread messages

    # bob's second device: it rejoins bob's rooms by itself (kept in this browser) and
    # looks at #random too.
    b2 = open_app(browser, server)
    bob2 = b2.page
    sign_in(bob2, "bob", PW)
    expect(conv_button(bob2, "#team")).to_be_visible()
    expect(conv_button(bob2, "#random")).to_be_visible()
    conv_button(bob2, "#random").click()
    expect(bob2.locator("#conv-title")).to_have_text("#random")

    # The member list shows who is in the room (alice sees bob arrive).
    for nick in ("bob", "dave"):
        member = alice.locator("#member-list .member-nick", has_text=re.compile(f"^{nick}$"))
        expect(member).to_be_visible()

    # alice talks: her line once on her page, on dave's client, and unread on bob's page.
    say(alice, "hi bob, welcome")
    dave.expect("PRIVMSG", "#team", "hi bob, welcome")
    expect(message(alice, "hi bob, welcome")).to_have_count(1)
    expect(alice.locator("#messages article.msg.pending")).to_have_count(0)
    expect(conv_button(bob, "#team")).to_have_attribute(
        "aria-label", re.compile(r"#team, 1 unread, 1 mention"))
    dave.send("PRIVMSG #team :a second line")
    expect(conv_button(bob, "#team")).to_have_attribute("aria-label", re.compile(r"2 unread"))
    expect(conv_button(bob2, "#team")).to_have_attribute("aria-label", re.compile(r"2 unread"))
    conv_button(bob, "#team").click()
    expect(message(bob, "hi bob, welcome")).to_be_visible()
    expect(bob.locator("#messages article.msg.mention", has_text="hi bob")).to_have_count(1)
    expect(conv_button(bob, "#team")).to_have_attribute("aria-label", "#team")
    # Read on one device, read everywhere: the read marker reaches bob's other page.
    expect(conv_button(bob2, "#team")).to_have_attribute("aria-label", "#team")
    shot(alice, "room")

    # Private conversations, both ways, from the page and from the IRC client.
    dave.send("PRIVMSG alice :psst, alice")
    expect(conv_button(alice, "dave")).to_have_attribute("aria-label", re.compile(r"1 unread"))
    conv_button(alice, "dave").click()
    expect(message(alice, "psst, alice")).to_be_visible()
    say(alice, "/msg dave hello back")
    dave.expect("PRIVMSG", "dave", "hello back")
    expect(message(alice, "hello back")).to_have_count(1)

    # dave makes alice an operator: the member list shows it; she sets the topic with /topic.
    conv_button(alice, "#team").click()
    dave.send("MODE #team +o alice")
    alice_row = alice.locator("#member-list .member", has_text="alice")
    expect(alice_row.locator(".prefix")).to_have_text("@")
    expect(alice.locator("#edit-topic")).to_be_visible()
    say(alice, "/topic Ship it on Friday")
    dave.expect("TOPIC", "#team", "Ship it on Friday")
    expect(bob.locator("#conv-topic")).to_have_text("Ship it on Friday")

    # Search finds what was said.
    say(bob, "/search welcome")
    expect(bob.locator("#search-status")).to_contain_text("1 result")
    expect(bob.locator("#search-results")).to_contain_text("hi bob, welcome")
    bob.get_by_role("button", name="Close search").click()

    # --- a real restart: both pages come back and show what they missed ----------------------
    servers.stop()
    expect(alice.locator("#connection-banner")).to_contain_text("Connection lost")
    expect(bob.locator("#connection-banner")).to_contain_text("Connection lost")
    browser.set_offline(True)  # the pages stay away until we say, so the gap is certain
    server = servers.start()
    dave = server.client("dave").join("#team")
    dave.send("PRIVMSG #team :said while you were away")
    dave.sync()
    browser.set_offline(False)
    for page in (alice, bob):
        expect(page.locator("body")).to_have_attribute("data-status", "online", timeout=20_000)
        expect(page.locator("#connection-banner")).to_be_hidden()
    expect(message(alice, "said while you were away")).to_have_count(1)
    expect(message(bob, "said while you were away")).to_have_count(1)
    expect(alice.locator("#messages .event", has_text="while you were away")).to_be_visible()
    expect(message(alice, "hi bob, welcome")).to_have_count(1)  # nothing shown twice
    say(bob, "back again")
    dave.expect("PRIVMSG", "#team", "back again")

    # --- the admin panel: admin login, people online, ban with a reason, unban ------------
    alice.get_by_role("button", name="Admin", exact=True).click()
    alice.get_by_label("Admin name").fill("alice")
    alice.locator("#oper-password").fill(PW)
    alice.get_by_role("button", name="Admin login").click()
    expect(alice.locator("#admin-tools")).to_be_visible()
    online = alice.locator("#online-list")
    expect(online.locator('[data-nick="bob"]')).to_be_visible()
    expect(online.locator('[data-nick="dave"]')).to_be_visible()
    expect(alice.locator("#audit-list")).to_contain_text("oper")
    shot(alice, "admin")
    alice.get_by_label("Reason").fill("spamming the room")
    online.locator('[data-nick="bob"]').get_by_role("button", name="Ban account bob").click()
    expect(bob.locator("#ended-view")).to_be_visible()
    expect(bob.locator("#ended-reason")).to_contain_text("banned")
    expect(bob.locator("#ended-reason")).to_contain_text("spamming the room")
    shot(bob, "banned")
    bans = alice.locator("#ban-list")
    expect(bans.locator('[data-target="account:bob"]')).to_be_visible()
    expect(alice.locator("#audit-list")).to_contain_text("spamming the room")
    bans.get_by_role("button", name="Remove the ban on account:bob").click()
    expect(bans).to_contain_text("No bans in force")

    # Kick from the server (KILL): the IRC client is told why.
    alice.get_by_label("Reason").fill("take a break")
    online.get_by_role("button", name="Disconnect dave from the server").click()
    dave.expect("ERROR", where=lambda m: "take a break" in m.param(0))

    # Phone width: the sidebar folds away behind a button.
    alice.get_by_role("button", name="Close the admin panel").click()
    alice.set_viewport_size({"width": 390, "height": 780})
    expect(alice.locator("#sidebar")).to_be_hidden()
    shot(alice, "phone")
    alice.get_by_role("button", name="Show conversations").click()
    expect(alice.locator("#sidebar")).to_be_visible()
    shot(alice, "phone-sidebar")
    alice.emulate_media(color_scheme="dark")
    alice.set_viewport_size({"width": 1280, "height": 800})
    shot(alice, "room-dark")

    expect(bob2.locator("#ended-reason")).to_contain_text("spamming the room")
    a.clean()
    b.clean()
    b2.clean()


def test_guest_history_on_scroll_keyboard_and_slash_commands(
    start_server: Callable[..., RunningServer], browser: BrowserContext
) -> None:
    server = start_server(chathistory_max=10)  # pages of 10: scrolling up must ask for more
    irc: IrcClient = server.client("frank").join("#one")
    for n in range(1, 16):
        irc.send(f"PRIVMSG #one :old line {n}")
    irc.sync()
    w = open_app(browser, server)
    page = w.page
    page.set_viewport_size({"width": 1000, "height": 380})  # ten lines overflow the view
    page.get_by_role("tab", name="Guest").click()
    page.locator("#login-nick").fill("gus")
    page.get_by_role("button", name="Join as guest").click()
    expect(page.locator("body")).to_have_attribute("data-status", "online")
    say(page, "/join #one")
    expect(page.locator("#conv-title")).to_have_text("#one")
    expect(message(page, "old line 15")).to_be_visible()
    expect(message(page, "old line 5")).to_have_count(0)  # not in the latest page
    page.locator("#messages").evaluate("node => { node.scrollTop = 0; }")
    expect(message(page, re.compile(r"^old line 1$"))).to_have_count(1)  # CHATHISTORY BEFORE
    expect(page.locator("#messages .history-edge")).to_contain_text("start of #one")
    say(page, "/join #two")
    expect(page.locator("#conv-title")).to_have_text("#two")

    # Alt+Up / Ctrl+K switch rooms; Tab completes a nickname.
    page.locator("#input").press("Alt+ArrowUp")
    expect(page.locator("#conv-title")).to_have_text("#one")
    page.locator("#input").press("Control+k")
    page.locator("#switcher-input").fill("two")
    page.locator("#switcher-input").press("Enter")
    expect(page.locator("#conv-title")).to_have_text("#two")
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator("#conv-title")).to_have_text("#one")
    page.locator("#input").fill("fr")
    page.locator("#input").press("Tab")
    expect(page.locator("#input")).to_have_value("frank: ")
    page.locator("#input").press("End")
    page.locator("#input").type("hello")
    page.locator("#input").press("Enter")
    irc.expect("PRIVMSG", "#one", "frank: hello")
    say(page, "/me waves")
    irc.expect("PRIVMSG", "#one", "\x01ACTION waves\x01")
    expect(page.locator("#messages article.action")).to_contain_text("gus waves")

    # A guest cannot take an account's name; /nick changes the guest's own.
    say(page, "/nick gustav")
    expect(page.locator("#me-nick")).to_have_text("gustav")
    say(page, "/part")
    irc.expect("PART", "#one")
    expect(conv_button(page, "#one")).to_have_count(0)

    irc.join("#two")
    expect(page.locator("#member-list .member-nick", has_text="frank")).to_be_visible()
    say(page, "/quit bye")
    expect(page.locator("#ended-view")).to_be_visible()
    expect(page.locator("#ended-title")).to_have_text("Signed out")
    irc.expect("QUIT", where=lambda m: "bye" in m.param(0))
    w.clean()
