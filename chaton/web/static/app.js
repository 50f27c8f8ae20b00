/**
 * The web client's entry point: sign-in, then wiring the session to the views (conversation
 * list, messages, members, search, admin), the composer with slash commands and Tab
 * completion, keyboard navigation, notifications and the connection banner.
 *
 * Nothing secret is stored: the password stays in the Session object of this tab only, and
 * the only thing kept in localStorage is the list of rooms to rejoin next time.
 *
 * @module app
 */

import { Session } from "./session.js";
import { interpret, completeNick } from "./commands.js";
import { askPermission, notifyIfHidden, shown as notificationsShown } from "./notify.js";
import { announce, byId } from "./ui/dom.js";
import { MessageView } from "./ui/messages.js";
import { Sidebar, Switcher, ordered } from "./ui/sidebar.js";
import { MemberList } from "./ui/members.js";
import { SearchPanel } from "./ui/search.js";
import { AdminPanel } from "./ui/admin.js";
import { casefold, isChannel } from "./irc.js";

const ROOMS_KEY = (account) => `chaton.rooms.${casefold(account || "guest")}`;
const NARROW = window.matchMedia("(max-width: 800px)");

// --- sign in -----------------------------------------------------------------------------
const loginView = byId("login-view");
const chatView = byId("chat-view");
const endedView = byId("ended-view");
const loginForm = byId("login-form");
const loginError = byId("login-error");
let guestMode = false;

function setMode(guest) {
  guestMode = guest;
  byId("tab-account").setAttribute("aria-selected", String(!guest));
  byId("tab-guest").setAttribute("aria-selected", String(guest));
  byId("password-row").hidden = guest;
  byId("login-nick-label").textContent = guest ? "Nickname" : "Account name";
  byId("login-hint").textContent = guest
    ? "Guests chat under a free nickname; history and read markers need an account."
    : "Sign in with your chaton account.";
  byId("login-submit").textContent = guest ? "Join as guest" : "Sign in";
}
byId("tab-account").addEventListener("click", () => setMode(false));
byId("tab-guest").addEventListener("click", () => setMode(true));
for (const tab of [byId("tab-account"), byId("tab-guest")]) {
  tab.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      setMode(!guestMode);
      byId(guestMode ? "tab-guest" : "tab-account").focus();
    }
  });
}

loginForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const nick = byId("login-nick").value.trim();
  const password = guestMode ? "" : byId("login-password").value;
  if (!/^[A-Za-z[\]\\`_^{|}][A-Za-z0-9[\]\\`_^{|}-]{0,31}$/.test(nick)) {
    loginError.textContent = "Use letters, digits and - _ [ ] { } \\ | ^ `, not starting with a digit.";
    byId("login-nick").focus();
    return;
  }
  if (!guestMode && !password) {
    loginError.textContent = "Give your password, or choose Guest.";
    byId("login-password").focus();
    return;
  }
  loginError.textContent = "";
  byId("login-password").value = "";
  askPermission();
  startChat({ nick, password });
});
byId("ended-again").addEventListener("click", () => location.reload());
byId("login-nick").focus();

/** Read-only facts for tests and debugging (never the session, which holds the password). */
const probe = { status: "signed-out" };
Object.defineProperty(window, "chatonProbe", {
  value: Object.freeze({
    get status() { return probe.status; },
    get notifications() { return notificationsShown.count; },
  }),
});

// --- the chat ------------------------------------------------------------------------------
function startChat(login) {
  const session = new Session(login);
  const account = login.password ? login.nick : "";
  /** @type {any} */
  let active = null;

  const view = new MessageView(byId("messages"), {
    older: (conv) => session.older(conv),
    me: () => session.me,
  });
  const sidebar = new Sidebar(session, { open: (c) => openConv(c), active: () => active });
  const switcher = new Switcher(session, (c) => openConv(c));
  const members = new MemberList(session, {
    message: (nick) => openConv(session.conv(nick)),
    kick: (room, nick) => session.send("KICK", [room, nick, byId("admin-reason").value.trim() || "Removed by an operator"]),
  });
  const search = new SearchPanel(session, { open: (name) => openConv(session.conv(name)), active: () => active });
  const admin = new AdminPanel(session);
  const input = /** @type {HTMLTextAreaElement} */ (byId("input"));

  loginView.hidden = true;
  chatView.hidden = false;
  byId("me-nick").textContent = login.nick;
  byId("me-kind").textContent = account ? "" : "guest";

  function saveRooms() {
    const rooms = [...session.conversations.values()].filter((c) => c.isRoom && (c.joined || c.rejoin)).map((c) => c.name);
    try { localStorage.setItem(ROOMS_KEY(account || ""), JSON.stringify(rooms)); } catch { /* private mode */ }
  }

  function savedRooms() {
    try {
      const rooms = JSON.parse(localStorage.getItem(ROOMS_KEY(account || "")) || "[]");
      return Array.isArray(rooms) ? rooms.filter((r) => typeof r === "string" && isChannel(r)).slice(0, 50) : [];
    } catch {
      return [];
    }
  }

  function visible() {
    return !document.hidden;
  }

  function readActive() {
    if (active && visible()) {
      const before = active.counts().unread;
      session.markRead(active);
      if (before) sidebar.render();
    }
  }

  function openConv(conv) {
    if (!conv) return;
    active = conv;
    if (!conv.isRoom && !conv.historyAsked && session.registered) {
      session.latest(conv);
      if (session.loggedInAs && session.caps.has("draft/read-marker")) session.send("MARKREAD", [conv.name]);
    }
    view.show(conv);
    header();
    members.render(conv);
    readActive();
    sidebar.render();
    closeSidebarIfNarrow();
    input.setAttribute("aria-label", `Message ${conv.name}`);
    input.placeholder = `Message ${conv.isRoom ? conv.name : conv.name}`;
    if (!NARROW.matches || document.activeElement === document.body) input.focus();
  }

  function header() {
    const title = byId("conv-title");
    const topic = byId("conv-topic");
    if (!active) {
      title.textContent = "Welcome";
      topic.textContent = "";
      byId("edit-topic").hidden = true;
      byId("leave-conv").hidden = true;
      return;
    }
    title.textContent = active.name;
    topic.textContent = active.isRoom ? (active.topic || (active.joined ? "No topic set" : "You are not in this room")) : "Private conversation";
    topic.classList.toggle("muted", !active.topic);
    byId("edit-topic").hidden = !active.isRoom || !active.joined;
    byId("leave-conv").hidden = false;
    byId("leave-conv").setAttribute("aria-label", active.isRoom ? `Leave ${active.name}` : `Close the conversation with ${active.name}`);
  }

  function step(delta) {
    const { rooms, dms } = ordered(session);
    const all = [...rooms, ...dms];
    if (!all.length) return;
    const i = all.indexOf(active);
    openConv(all[(i + delta + all.length) % all.length]);
  }

  function localInfo(text, kind = "info") {
    if (active) session.info(active.name, text, kind);
    else announce(text);
  }

  // --- session events ---
  session.on("conversations", () => {
    if (active && !session.conversations.has(active.key)) {
      active = null;
      const { rooms, dms } = ordered(session);
      const next = rooms[0] || dms[0];
      if (next) openConv(next); else { view.show(null); header(); members.render(null); }
    }
    sidebar.render();
    saveRooms();
  });
  session.on("joined", (conv) => {
    if (!active || conv.wantOpen) {
      conv.wantOpen = false;
      openConv(conv);
    } else if (conv === active) {
      header();
      members.render(conv);
    }
    saveRooms();
  });
  session.on("left", (conv) => { announce(`You left ${conv.name}`); saveRooms(); });
  session.on("messages", ({ conv, live, prepended }) => {
    if (conv === active) {
      view.render();
      if (live || !prepended) readActive();
    }
    sidebar.render();
  });
  session.on("counts", (conv) => {
    sidebar.render();
    if (conv === active) readActive();
  });
  session.on("members", (conv) => { if (conv === active) members.render(conv); });
  session.on("topic", (conv) => { if (conv === active) header(); });
  session.on("me", (nick) => { byId("me-nick").textContent = nick; });
  session.on("notify", (what) => {
    notifyIfHidden(what, (c) => openConv(c));
    if (what.conv !== active) announce(`${what.entry.nick}${what.conv.isRoom ? ` in ${what.conv.name}` : ""}: ${what.entry.text.slice(0, 140)}`);
  });
  session.on("error", (text) => localInfo(text, "error"));
  session.on("notice", (text) => localInfo(text));
  session.on("oper", () => {
    byId("open-admin").classList.add("on");
    if (active) members.render(active);
  });
  session.on("gap", ({ conv, added, firstMs }) => {
    session.info(conv.name, `${added} message${added === 1 ? "" : "s"} while you were away`, "event", firstMs - 1);
  });
  session.on("registered", ({ again }) => {
    byId("server-name").textContent = session.serverName || "chaton";
    if (!again) {
      const rooms = savedRooms();
      if (rooms.length) session.send("JOIN", [rooms.join(",")]);
    }
  });
  session.on("status", (status) => {
    const banner = byId("connection-banner");
    document.body.dataset.status = status;
    probe.status = status;
    if (status === "ended") {
      chatView.hidden = true;
      endedView.hidden = false;
      byId("ended-title").textContent = /banned/i.test(session.endReason) ? "You are banned"
        : /killed/i.test(session.endReason) ? "You were disconnected" : session.endReason === "You signed out." ? "Signed out" : "Disconnected";
      byId("ended-reason").textContent = session.endReason;
      byId("ended-again").focus();
      return;
    }
    if (status === "lost") {
      const info = session.lostInfo;
      const why = session.lastError || info?.why || "connection lost";
      banner.hidden = false;
      banner.textContent = `Connection lost (${why}). Reconnecting in ${Math.max(1, Math.round((info?.delay || 1000) / 1000))} s…`;
      banner.append(" ");
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "subtle";
      retry.textContent = "Try now";
      retry.addEventListener("click", () => session.connection.retryNow());
      banner.append(retry);
      session.lastError = "";
      return;
    }
    if (status === "connecting") {
      banner.hidden = false;
      banner.textContent = "Connecting…";
      return;
    }
    banner.hidden = true;
    banner.textContent = "";
  });

  // --- composer ---
  let completion = null;
  input.addEventListener("keydown", (e) => {
    if (e.key === "Tab" && !e.shiftKey && !e.altKey && !e.ctrlKey && input.value.trim()) {
      const nicks = active && active.isRoom ? [...active.members.values()].map((m) => m.nick).filter((n) => !session.isMe(n))
        : active ? [active.name] : [];
      const recent = active ? [...active.messages].reverse().map((m) => m.nick).filter(Boolean) : [];
      const order = [...new Set([...recent.filter((n) => nicks.includes(n)), ...nicks.sort()])];
      const done = completeNick(input.value, input.selectionStart ?? input.value.length, order, completion);
      if (done) {
        e.preventDefault();
        input.value = done.text;
        input.setSelectionRange(done.cursor, done.cursor);
        completion = done.state;
      }
      return;
    }
    completion = null;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  });
  byId("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });

  function submit() {
    const text = input.value;
    if (!text.trim()) return;
    const action = interpret(text.trim().startsWith("/") ? text.trim() : text, active ? active.name : "");
    input.value = "";
    input.style.height = "auto";
    run(action);
  }

  function run(action) {
    switch (action.type) {
      case "say":
        if (!action.target) { localInfo("Open a conversation first.", "error"); return; }
        if (active && active.isRoom && !active.joined) { localInfo(`You are not in ${active.name}: /join ${active.name}`, "error"); return; }
        session.say(action.target, action.text);
        return;
      case "action": session.say(action.target, action.text, true); return;
      case "join": {
        const conv = session.conv(action.room, false);
        if (conv && conv.joined) { openConv(conv); return; }
        session.join(action.room, action.key);
        const pending = session.conv(action.room);
        pending.wantOpen = true;
        return;
      }
      case "part": session.part(action.room, action.reason); return;
      case "msg": {
        const conv = session.conv(action.target);
        if (action.text) session.say(action.target, action.text);
        openConv(conv);
        return;
      }
      case "topic": session.setTopic(action.room, action.text); return;
      case "show-topic": {
        const conv = session.conv(action.room, false);
        localInfo(conv && conv.topic ? `Topic of ${conv.name}: ${conv.topic}` : `No topic for ${action.room}`);
        return;
      }
      case "nick": session.send("NICK", [action.nick]); return;
      case "search": showPanel("search"); search.run(action.text); return;
      case "quit": session.quit(action.reason); return;
      default: localInfo(action.text, "error");
    }
  }

  // --- header buttons, forms, panels ---
  const panels = { members: byId("members"), search: byId("search-panel"), admin: byId("admin-panel") };
  function showPanel(name) {
    for (const [key, node] of Object.entries(panels)) {
      const on = key === name ? (key === "members" ? !chatView.classList.contains("members-open") : node.hidden) : false;
      if (key === "members") chatView.classList.toggle("members-open", on);
      else node.hidden = !on;
    }
    byId("toggle-members").setAttribute("aria-expanded", String(chatView.classList.contains("members-open")));
    byId("open-search").setAttribute("aria-expanded", String(!panels.search.hidden));
    const scrim = NARROW.matches && (chatView.classList.contains("members-open") || !panels.search.hidden || !panels.admin.hidden);
    byId("scrim").hidden = !scrim && !chatView.classList.contains("sidebar-open");
    if (name === "search" && !panels.search.hidden) byId("search-text").focus();
    if (name === "admin" && !panels.admin.hidden) {
      admin.render();
      if (session.isOper) admin.refresh();
      (session.isOper ? byId("refresh-online") : byId("oper-name")).focus();
    }
  }
  function closePanels() {
    chatView.classList.remove("members-open");
    panels.search.hidden = true;
    panels.admin.hidden = true;
    byId("toggle-members").setAttribute("aria-expanded", "false");
    byId("open-search").setAttribute("aria-expanded", "false");
    byId("scrim").hidden = !chatView.classList.contains("sidebar-open");
  }
  if (!NARROW.matches) chatView.classList.add("members-open");
  byId("toggle-members").setAttribute("aria-expanded", String(chatView.classList.contains("members-open")));
  byId("toggle-members").addEventListener("click", () => showPanel("members"));
  byId("close-members").addEventListener("click", () => { closePanels(); byId("toggle-members").focus(); });
  byId("open-search").addEventListener("click", () => showPanel("search"));
  byId("close-search").addEventListener("click", () => { closePanels(); byId("open-search").focus(); });
  byId("open-admin").addEventListener("click", () => showPanel("admin"));
  byId("close-admin").addEventListener("click", () => { closePanels(); byId("open-admin").focus(); });
  byId("sign-out").addEventListener("click", () => session.quit("Signed out"));

  function toggleSidebar(open) {
    chatView.classList.toggle("sidebar-open", open);
    byId("open-sidebar").setAttribute("aria-expanded", String(open));
    byId("scrim").hidden = !open;
    if (open) byId("close-sidebar").focus();
  }
  function closeSidebarIfNarrow() {
    if (NARROW.matches && chatView.classList.contains("sidebar-open")) toggleSidebar(false);
  }
  byId("open-sidebar").addEventListener("click", () => toggleSidebar(true));
  byId("close-sidebar").addEventListener("click", () => { toggleSidebar(false); byId("open-sidebar").focus(); });
  byId("scrim").addEventListener("click", () => { toggleSidebar(false); closePanels(); });

  function inlineForm(buttonId, formId, inputId, onSubmit) {
    const button = byId(buttonId);
    const form = byId(formId);
    const field = /** @type {HTMLInputElement} */ (byId(inputId));
    button.addEventListener("click", () => {
      form.hidden = !form.hidden;
      button.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) field.focus();
    });
    field.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { form.hidden = true; button.setAttribute("aria-expanded", "false"); button.focus(); }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = field.value.trim();
      if (!value) return;
      field.value = "";
      form.hidden = true;
      button.setAttribute("aria-expanded", "false");
      onSubmit(value);
    });
  }
  inlineForm("show-join", "join-form", "join-name", (name) => run(interpret(`/join ${name}`, "")));
  inlineForm("show-dm", "dm-form", "dm-name", (nick) => run({ type: "msg", target: nick, text: "" }));

  byId("edit-topic").addEventListener("click", () => {
    if (!active) return;
    const form = byId("topic-form");
    form.hidden = false;
    byId("conv-topic").hidden = true;
    const field = /** @type {HTMLInputElement} */ (byId("topic-input"));
    field.value = active.topic;
    field.focus();
  });
  function endTopicEdit() {
    byId("topic-form").hidden = true;
    byId("conv-topic").hidden = false;
  }
  byId("topic-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (active) session.setTopic(active.name, /** @type {HTMLInputElement} */ (byId("topic-input")).value);
    endTopicEdit();
    input.focus();
  });
  byId("topic-cancel").addEventListener("click", () => { endTopicEdit(); byId("edit-topic").focus(); });
  byId("leave-conv").addEventListener("click", () => { if (active) session.close(active.name); });

  // --- keyboard ---
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
      e.preventDefault();
      if (byId("switcher").hidden) switcher.open(); else switcher.close();
      return;
    }
    if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      e.preventDefault();
      step(e.key === "ArrowUp" ? -1 : 1);
      return;
    }
    if (e.key === "Escape" && NARROW.matches) { toggleSidebar(false); closePanels(); }
  });
  document.addEventListener("visibilitychange", readActive);
  window.addEventListener("focus", readActive);

  sidebar.render();
  header();
  members.render(null);
  session.start();
}
