/**
 * One person's IRC session in the browser: registration and login, then the state of every
 * conversation, kept across reconnects. The UI only listens to its events and calls its
 * methods; nothing here touches the DOM.
 *
 * Registration (as chaton/client/session.py does it):
 * 1. On every new link: `CAP LS 302`, `NICK`, `USER`. From the LS reply request what is
 *    offered of WANTED_CAPS (`sasl` only with a password).
 * 2. After ACK: with a password `AUTHENTICATE PLAIN`, the payload, 903, then `CAP END`;
 *    a 904/905 ends the session for good (a wrong password never loops).
 * 3. After the welcome (376/422): rejoin the rooms, fill the gaps (CHATHISTORY AFTER from
 *    the newest message seen, a millisecond earlier; known ids are dropped), and ask
 *    CHATHISTORY TARGETS for private conversations.
 *
 * Invariants:
 * - Lines inside our history/search/targets batches never act as live events.
 * - A message id is shown once: with echo-message our own lines appear as the server
 *   echoes them (matched to the pending copy by label), without it they are shown as sent.
 * - History requests are answered in the order sent, one batch or FAIL each; the first
 *   pending request of the batch's kind and target owns a batch.
 * - A KILL, a ban or a failed login ends the session for good with the server's reason.
 * - The password lives only in this object, and only leaves inside AUTHENTICATE/OPER.
 *
 * @module session
 */

import { Connection, isFinal } from "./connection.js";
import { Conversation, TEXT_KINDS, localId } from "./conversation.js";
import {
  casefold, escapeTag, isChannel, parse, parseStamp, saslPlainLines, serialize, splitSource,
  utcStamp,
} from "./irc.js";
import { mentions, stripFormatting } from "./text.js";

export const WANTED_CAPS = [
  "server-time", "message-tags", "echo-message", "multi-prefix", "batch",
  "labeled-response", "account-tag", "sasl", "draft/chathistory", "draft/search",
  "draft/read-marker", "draft/message-redaction", "cap-notify",
];

export const HISTORY_LIMIT = 50;
export const GAP_LIMIT = 100;
export const MAX_GAP_PAGES = 5;
const MAX_SEEN = 20000;
/** Bytes a PRIVMSG text may take so the relayed line (with our prefix) still fits 512. */
const TEXT_BYTES = 400;
/** Server notices that answer an admin's command (they go to the admin panel). */
const ADMIN_NOTICE = /^(Audit: |End of audit log|Ban: |End of ban list|Banned |Removed the ban|Killed |\(the \d+ older bans)/;

/** @param {string} text @returns {string[]} pieces of at most TEXT_BYTES UTF-8 bytes */
export function splitText(text) {
  const enc = new TextEncoder();
  const out = [];
  let piece = "";
  let size = 0;
  for (const ch of text) {
    const n = enc.encode(ch).length;
    if (size + n > TEXT_BYTES) { out.push(piece); piece = ""; size = 0; }
    piece += ch;
    size += n;
  }
  if (piece) out.push(piece);
  return out;
}

/** The reason inside `Closing Link: <ip> (<reason>)`, or the whole text. */
export function errorReason(text) {
  const m = /^Closing Link: \S+ \((.*)\)$/s.exec(text);
  return m ? m[1] : text;
}

export class Session {
  /**
   * @param {{nick: string, password?: string}} login
   */
  constructor(login) {
    this.wantedNick = login.nick;
    this.account = login.password ? login.nick : "";
    this.password = login.password || "";
    this.me = login.nick;
    this.loggedInAs = "";
    /** connecting | online | lost | ended */
    this.status = "connecting";
    this.endReason = "";
    this.lostInfo = null;
    this.isOper = false;
    /** @type {Map<string, Conversation>} */
    this.conversations = new Map();
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
    /** @type {Set<string>} every msgid shown (bounded) */
    this.seen = new Set();
    this.connectedOnce = false;
    this.serverName = "";
    this.isupport = {};
    this.resetLink();
    this.connection = new Connection({
      open: () => this.onOpen(),
      line: (line) => this.onLine(line),
      lost: (info) => this.onLost(info),
    });
  }

  resetLink() {
    this.caps = new Set();
    this.offered = new Map();
    this.registered = false;
    this.nickTries = 0;
    this.requests = [];
    /** @type {Map<string, {type: string, target: string, request: any, lines: any[]}>} */
    this.batches = new Map();
    this.pendingEcho = new Map();
    this.labelSeq = 0;
    this.whoRows = null;
    this.banned = "";
    this.isOper = false;
  }

  // --- events ------------------------------------------------------------------------------
  /** @param {string} type @param {Function} fn */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  emit(type, detail) {
    for (const fn of this.listeners.get(type) ?? []) {
      try { fn(detail); } catch (err) { console.error(err); }
    }
  }

  // --- the link ----------------------------------------------------------------------------
  start() {
    this.status = "connecting";
    this.emit("status", this.status);
    this.connection.start();
  }

  /** @param {string} command @param {string[]} [params] @param {Record<string,string>} [tags] */
  send(command, params = [], tags = {}) {
    return this.connection.send(serialize(command, params, tags));
  }

  onOpen() {
    this.resetLink();
    this.send("CAP", ["LS", "302"]);
    this.send("NICK", [this.me || this.wantedNick]);
    this.send("USER", ["web", "0", "*", this.wantedNick]);
  }

  onLost(info) {
    if (this.status === "ended") return;
    this.status = "lost";
    this.lostInfo = info;
    for (const conv of this.conversations.values()) {
      for (const m of [...conv.messages]) if (m.pending) conv.remove(m.id);
    }
    this.emit("status", this.status);
  }

  /** End for good with `reason` (shown on the page). */
  end(reason) {
    if (this.status === "ended") return;
    this.status = "ended";
    this.endReason = reason;
    this.password = "";
    this.connection.stop();
    this.emit("status", this.status);
  }

  quit(reason = "Leaving") {
    this.send("QUIT", [reason]);
    this.end("You signed out.");
  }

  // --- conversations -----------------------------------------------------------------------
  /** @param {string} name @param {boolean} [create] @returns {Conversation|undefined} */
  conv(name, create = true) {
    const key = casefold(name);
    let c = this.conversations.get(key);
    if (!c && create) {
      c = new Conversation(name);
      this.conversations.set(key, c);
      this.emit("conversations");
    }
    return c;
  }

  isMe(nick) {
    return casefold(nick) === casefold(this.me);
  }

  /** The room or peer a PRIVMSG/NOTICE belongs to; null for a server's notice. */
  conversationOf(msg) {
    const target = msg.params[0].replace(/^[@+~&%]+/, "");
    if (isChannel(target)) return target;
    const src = splitSource(msg.source);
    if (!src.user && (src.nick.includes(".") || !msg.source)) return null;
    if (this.isMe(src.nick)) return msg.params[0];
    return src.nick;
  }

  firstSight(msgid) {
    if (!msgid) return true;
    if (this.seen.has(msgid)) return false;
    this.seen.add(msgid);
    if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.values().next().value);
    return true;
  }

  /** A PRIVMSG/NOTICE as an entry (or null for CTCP other than ACTION). */
  entryOf(msg, fresh) {
    let text = msg.params[1] ?? "";
    let kind = msg.command === "NOTICE" ? "notice" : "msg";
    if (text.startsWith("\x01")) {
      const body = text.replace(/^\x01|\x01$/g, "");
      if (!body.startsWith("ACTION")) return null;
      kind = "action";
      text = body.slice(6).replace(/^ /, "");
    }
    text = stripFormatting(text);
    const nick = splitSource(msg.source).nick;
    const stamp = msg.tags.time || "";
    let ms = parseStamp(stamp);
    if (Number.isNaN(ms)) ms = Date.now();
    const self = this.isMe(nick) || (!!this.loggedInAs && casefold(msg.tags.account || "") === casefold(this.loggedInAs) && !!msg.tags.account);
    return {
      id: msg.tags.msgid || localId(), msgid: msg.tags.msgid || "", ms, stamp, nick, kind,
      text, self, fresh,
      // A second device holds "bob_1": a mention of the account's name is still a mention.
      mention: !self && (mentions(text, this.me) || (!!this.loggedInAs && mentions(text, this.loggedInAs))),
    };
  }

  info(target, text, kind = "info", ms = Date.now()) {
    const conv = target ? this.conv(target) : null;
    if (!conv) {
      this.emit("notice", text);
      return;
    }
    conv.insert({ id: localId(), msgid: "", ms, stamp: "", nick: "", kind, text,
      self: false, mention: false, fresh: false });
    this.emit("messages", { conv, live: true });
  }

  // --- talking -----------------------------------------------------------------------------
  /** Send `text` to `target` (several lines and long text are split). */
  say(target, text, action = false) {
    const conv = this.conv(target);
    for (const line of text.split(/\r?\n/)) {
      if (!line.trim()) continue;
      for (const piece of splitText(line)) {
        const body = action ? `\x01ACTION ${piece}\x01` : piece;
        const tags = {};
        let label = "";
        if (this.caps.has("labeled-response") && this.caps.has("echo-message")) {
          this.labelSeq += 1;
          label = `w${this.labelSeq}`;
          tags.label = label;
        }
        if (!this.send("PRIVMSG", [target, body], tags)) {
          this.info(target, "Not connected: the message was not sent.", "error");
          return;
        }
        const entry = {
          id: localId(), msgid: "", ms: Date.now(), stamp: "", nick: this.me,
          kind: action ? "action" : "msg", text: stripFormatting(piece), self: true,
          mention: false, fresh: true, pending: this.caps.has("echo-message"), label,
        };
        conv.insert(entry);
        if (entry.pending) this.pendingEcho.set(label || `${conv.key}\n${body}`, entry.id);
      }
    }
    this.emit("messages", { conv, live: true });
  }

  join(room, key = "") {
    this.send("JOIN", key ? [room, key] : [room]);
  }

  part(room, reason = "") {
    this.send("PART", reason ? [room, reason] : [room]);
  }

  /** Forget a private conversation locally (there is nothing to leave on the server). */
  close(name) {
    const conv = this.conv(name, false);
    if (!conv) return;
    if (conv.isRoom && conv.joined) { this.part(name); return; }
    this.conversations.delete(conv.key);
    this.emit("conversations");
  }

  setTopic(room, topic) {
    this.send("TOPIC", [room, topic]);
  }

  /** Tell the server (and so the account's other devices) that `conv` is read. */
  markRead(conv) {
    const newest = conv.newestStamped();
    if (!newest) return;
    const before = conv.counts().unread;
    conv.readHere = Math.max(conv.readHere ?? 0, newest.ms);
    if (this.loggedInAs && this.caps.has("draft/read-marker") && (conv.marker === null || newest.ms > conv.marker)
        && newest.stamp && (!conv.isRoom || conv.joined)) {
      this.send("MARKREAD", [conv.name, `timestamp=${newest.stamp}`]);
    }
    if (before) this.emit("counts", conv);
  }

  search(text, where = "", from = "") {
    const pairs = [["text", text]];
    if (where) pairs.push(["in", where]);
    if (from) pairs.push(["from", from]);
    pairs.push(["limit", "50"]);
    this.requests.push({ kind: "search", type: "draft/search", target: "", text, where });
    this.send("SEARCH", [pairs.map(([k, v]) => `${k}=${escapeTag(v)}`).join(";")]);
  }

  // --- history requests --------------------------------------------------------------------
  hasHistory() {
    return this.caps.has("draft/chathistory") && this.caps.has("batch");
  }

  historyMax(wanted) {
    const max = Number(this.isupport.CHATHISTORY);
    return max > 0 ? Math.min(max, wanted) : wanted;
  }

  ask(kind, target, params, extra = {}) {
    if (!this.hasHistory()) return;
    const limit = Number(params[params.length - 1]);
    this.requests.push({ kind, type: kind === "targets" ? "draft/chathistory-targets" : "chathistory", target, limit, ...extra });
    this.send("CHATHISTORY", params);
  }

  latest(conv) {
    conv.historyAsked = true;
    const n = this.historyMax(HISTORY_LIMIT);
    this.ask("latest", conv.name, ["LATEST", conv.name, "*", String(n)]);
  }

  /** Older messages than the oldest shown (scrolling up). */
  older(conv) {
    if (conv.complete || conv.loadingOlder || !this.hasHistory() || !this.registered) return;
    const oldest = conv.oldestStamped();
    if (!oldest) { this.latest(conv); return; }
    conv.loadingOlder = true;
    const ref = oldest.msgid ? `msgid=${oldest.msgid}` : `timestamp=${oldest.stamp}`;
    const n = this.historyMax(HISTORY_LIMIT);
    this.ask("before", conv.name, ["BEFORE", conv.name, ref, String(n)]);
    this.emit("messages", { conv, live: false });
  }

  /** What `conv` said after the newest message seen (from a millisecond earlier). */
  gap(conv, page = 1) {
    const newest = conv.newestStamped();
    if (!newest) { this.latest(conv); return; }
    const from = utcStamp(new Date(newest.ms - 1));
    const n = this.historyMax(GAP_LIMIT);
    this.ask("gap", conv.name, ["AFTER", conv.name, `timestamp=${from}`, String(n)], { page });
  }

  claim(type, target) {
    const key = target ? casefold(target) : "";
    const i = this.requests.findIndex((r) => r.type === type && (!r.target || casefold(r.target) === key));
    return i < 0 ? null : this.requests.splice(i, 1)[0];
  }

  // --- admin -------------------------------------------------------------------------------
  oper(name, password) {
    this.send("OPER", [name, password]);
  }

  who() {
    this.whoRows = [];
    this.send("WHO", ["*", "%tuihnfar,7"]);
  }

  // --- the server's lines ------------------------------------------------------------------
  onLine(line) {
    let msg;
    try {
      msg = parse(line);
    } catch {
      return;
    }
    const ref = msg.tags.batch;
    if (ref && this.batches.has(ref) && msg.command !== "BATCH") {
      const batch = this.batches.get(ref);
      if (batch.lines.length < 5000) batch.lines.push(msg);
      return;
    }
    const handler = HANDLERS[msg.command];
    if (handler) handler.call(this, msg);
    else if (/^[45]\d\d$/.test(msg.command)) this.onErrorNumeric(msg);
  }

  onErrorNumeric(msg) {
    const text = msg.params.slice(1).join(" ");
    if (msg.command === "421" && msg.params[1] === "CHATHISTORY") this.claim("chathistory", "");
    if (!this.registered && (msg.command === "433" || msg.command === "432")) return;
    this.emit("error", text);
  }

  welcomeDone() {
    if (this.registered) return;
    this.registered = true;
    this.status = "online";
    this.lostInfo = null;
    const again = this.connectedOnce;
    this.connectedOnce = true;
    const rooms = [...this.conversations.values()].filter((c) => c.isRoom && (c.joined || c.rejoin));
    for (const c of rooms) { c.rejoin = true; c.joined = false; }
    if (rooms.length) this.send("JOIN", [rooms.map((c) => c.name).join(",")]);
    if (again) {
      for (const c of this.conversations.values()) if (!c.isRoom && c.historyAsked) this.gap(c);
    }
    if (this.hasHistory()) {
      const since = again ? this.newestAnywhere() : "1970-01-01T00:00:00.000Z";
      const until = utcStamp(new Date(Date.now() + 86400000));
      this.ask("targets", "", ["TARGETS", `timestamp=${since}`, `timestamp=${until}`, "50"]);
    }
    this.emit("status", this.status);
    this.emit("registered", { again });
  }

  newestAnywhere() {
    let best = 0;
    let stamp = "1970-01-01T00:00:00.000Z";
    for (const c of this.conversations.values()) {
      const n = c.newestStamped();
      if (n && n.ms > best) { best = n.ms; stamp = utcStamp(new Date(n.ms - 1)); }
    }
    return stamp;
  }

  /** A finished history/search/targets batch. */
  finishBatch(batch) {
    const req = batch.request;
    if (batch.type === "draft/search") {
      const results = batch.lines.filter((m) => m.command === "PRIVMSG" || m.command === "NOTICE")
        .map((m) => ({ where: this.conversationOf(m) || "", entry: this.entryOf(m, false) }))
        .filter((r) => r.entry);
      this.emit("search", { query: req ? req.text : "", results });
      return;
    }
    if (batch.type === "draft/chathistory-targets") {
      for (const m of batch.lines) {
        if (m.command !== "CHATHISTORY" || (m.params[0] || "").toUpperCase() !== "TARGETS") continue;
        const name = m.params[1];
        if (!name || isChannel(name) || this.isMe(name)) continue;
        const known = this.conv(name, false);
        const conv = known || this.conv(name);
        if (!known || !conv.historyAsked) {
          this.latest(conv);
          if (this.loggedInAs && this.caps.has("draft/read-marker")) this.send("MARKREAD", [name]);
        } else if (!conv.newestStamped() || parseStamp(m.params[2]) > conv.newestStamped().ms) {
          this.gap(conv);
        }
      }
      return;
    }
    const target = batch.target || (req && req.target);
    if (!target) return;
    const conv = this.conv(target);
    const kind = req ? req.kind : "latest";
    const fresh = kind === "gap";
    let added = 0;
    let firstMs = Infinity;
    const texts = batch.lines.filter((m) => m.command === "PRIVMSG" || m.command === "NOTICE");
    for (const m of texts) {
      const e = this.entryOf(m, fresh);
      if (!e || (e.msgid && !this.firstSight(e.msgid))) continue;
      if (conv.insert(e)) {
        added += 1;
        firstMs = Math.min(firstMs, e.ms);
      }
    }
    if (kind === "before") conv.loadingOlder = false;
    if ((kind === "latest" || kind === "before") && req && texts.length < req.limit) conv.complete = true;
    if (kind === "gap" && req && texts.length >= req.limit && req.page < MAX_GAP_PAGES) {
      this.gap(conv, req.page + 1);
    }
    this.emit("messages", { conv, live: false, prepended: kind === "before", added, gap: fresh });
    if (fresh && added) {
      this.emit("gap", { conv, added, firstMs });
    }
  }
}

/** @type {Record<string, (this: Session, msg: any) => void>} */
const HANDLERS = {
  PING(msg) { this.send("PONG", msg.params.length ? [msg.params[msg.params.length - 1]] : []); },

  CAP(msg) {
    const sub = (msg.params[1] || "").toUpperCase();
    if (sub === "LS") {
      const more = msg.params[2] === "*" && msg.params.length > 3;
      const list = more ? msg.params[3] : msg.params[2] || "";
      for (const item of list.split(" ").filter(Boolean)) {
        const eq = item.indexOf("=");
        this.offered.set(eq < 0 ? item : item.slice(0, eq), eq < 0 ? "" : item.slice(eq + 1));
      }
      if (more || this.registered) return;
      const want = WANTED_CAPS.filter((c) => this.offered.has(c) && (c !== "sasl" || this.password));
      if (this.password && !this.offered.has("sasl")) {
        this.end("This server does not offer sign-in with an account (SASL).");
        return;
      }
      if (want.length) this.send("CAP", ["REQ", want.join(" ")]);
      else this.send("CAP", ["END"]);
    } else if (sub === "ACK") {
      for (const c of (msg.params[2] || "").split(" ").filter(Boolean)) {
        if (c.startsWith("-")) this.caps.delete(c.slice(1)); else this.caps.add(c);
      }
      if (this.registered) return;
      if (this.caps.has("sasl") && this.password) this.send("AUTHENTICATE", ["PLAIN"]);
      else this.send("CAP", ["END"]);
    } else if (sub === "NAK") {
      if (!this.registered) this.send("CAP", ["END"]);
    } else if (sub === "NEW" || sub === "DEL") {
      if (sub === "DEL") for (const c of (msg.params[2] || "").split(" ")) this.caps.delete(c);
    }
  },

  AUTHENTICATE(msg) {
    if (msg.params[0] !== "+" || !this.password) return;
    for (const chunk of saslPlainLines(this.account, this.password)) this.send("AUTHENTICATE", [chunk]);
  },
  900(msg) { this.loggedInAs = msg.params[2] || this.account; },
  903() { if (!this.registered) this.send("CAP", ["END"]); },
  904() { this.end("Sign-in failed: the account name or password is wrong."); },
  905() { this.end("Sign-in failed: the account name or password is too long."); },
  902() { this.end("Sign-in failed: that account cannot sign in now."); },

  "001"(msg) {
    this.me = msg.params[0];
    this.serverName = msg.source;
    this.emit("me", this.me);
  },
  "005"(msg) {
    for (const token of msg.params.slice(1, -1)) {
      const eq = token.indexOf("=");
      if (eq < 0) this.isupport[token] = ""; else this.isupport[token.slice(0, eq)] = token.slice(eq + 1);
    }
  },
  376() { this.welcomeDone(); },
  422() { this.welcomeDone(); },
  433() {
    if (this.registered) { this.emit("error", "That nickname is taken."); return; }
    this.nickTries += 1;
    if (this.nickTries > 5) { this.end("Every nickname tried is in use."); return; }
    this.me = `${this.wantedNick.slice(0, 14)}_${this.nickTries}`;
    this.send("NICK", [this.me]);
  },
  432() {
    if (this.registered) { this.emit("error", "That nickname is not allowed."); return; }
    this.end("That nickname is not allowed: use letters, digits and - _ [ ] { } \\ | ^ `, not starting with a digit.");
  },
  465(msg) { this.banned = msg.params.slice(1).join(" "); },
  381() { this.isOper = true; this.emit("oper", true); },
  464(msg) {
    if (this.registered) this.emit("operfailed", msg.params[1] || "Password incorrect");
  },
  481(msg) { this.emit("admin-error", msg.params[1] || "Permission denied"); this.emit("error", msg.params[1] || "Permission denied"); },

  ERROR(msg) {
    const reason = errorReason(msg.params[0] || "");
    if (this.banned || isFinal(reason)) {
      this.end(reason || this.banned);
    } else {
      this.lastError = reason;
    }
  },

  FAIL(msg) {
    const [command, code] = msg.params;
    const text = msg.params[msg.params.length - 1];
    if (command === "CHATHISTORY") {
      const req = this.claim("chathistory", "");
      if (req && req.kind === "before") {
        const conv = this.conv(req.target, false);
        if (conv) { conv.loadingOlder = false; conv.complete = true; this.emit("messages", { conv, live: false }); }
      }
      return;
    }
    if (command === "SEARCH") {
      this.claim("draft/search", "");
      this.emit("search", { query: "", results: [], error: text });
      return;
    }
    if (command === "MARKREAD") return;
    if (command === "NICK" && code === "ACCOUNT_REQUIRED" && !this.registered) {
      this.end(`The name ${msg.params[2] || this.me} belongs to an account: sign in with its password, or pick another name.`);
      return;
    }
    if (command === "UBAN" || command === "AUDIT" || command === "KILL") this.emit("admin-error", text);
    this.emit("error", text);
  },

  BATCH(msg) {
    const ref = msg.params[0] || "";
    if (ref.startsWith("+")) {
      const type = (msg.params[1] || "").toLowerCase();
      if (!["chathistory", "draft/search", "draft/chathistory-targets"].includes(type)) return;
      const target = type === "chathistory" ? msg.params[2] || "" : "";
      const request = this.claim(type, target);
      this.batches.set(ref.slice(1), { type, target, request, lines: [] });
    } else if (ref.startsWith("-")) {
      const batch = this.batches.get(ref.slice(1));
      if (!batch) return;
      this.batches.delete(ref.slice(1));
      this.finishBatch(batch);
    }
  },

  PRIVMSG(msg) { this.onText(msg); },
  NOTICE(msg) { this.onText(msg); },

  JOIN(msg) {
    const nick = splitSource(msg.source).nick;
    const room = msg.params[0];
    const conv = this.conv(room);
    if (this.isMe(nick)) {
      const again = conv.rejoin;
      conv.joined = true;
      conv.rejoin = false;
      conv.members = new Map();
      if (this.hasHistory()) {
        if (again && conv.newestStamped()) this.gap(conv); else if (!conv.historyAsked) this.latest(conv);
      }
      this.emit("conversations");
      this.emit("joined", conv);
    } else {
      conv.setMember(nick, "");
      this.emit("members", conv);
    }
  },

  PART(msg) {
    const nick = splitSource(msg.source).nick;
    const conv = this.conv(msg.params[0], false);
    if (!conv) return;
    if (this.isMe(nick)) {
      this.conversations.delete(conv.key);
      this.emit("conversations");
      this.emit("left", conv);
    } else {
      conv.removeMember(nick);
      this.emit("members", conv);
    }
  },

  KICK(msg) {
    const [room, victim, reason = ""] = msg.params;
    const conv = this.conv(room, false);
    if (!conv) return;
    const by = splitSource(msg.source).nick;
    if (this.isMe(victim)) {
      conv.joined = false;
      conv.rejoin = false;
      conv.members = new Map();
      this.info(room, `You were removed from ${room} by ${by}${reason ? `: ${reason}` : ""}`, "error");
      this.emit("conversations");
      this.emit("members", conv);
    } else {
      conv.removeMember(victim);
      this.info(room, `${victim} was removed by ${by}${reason ? `: ${reason}` : ""}`, "event");
      this.emit("members", conv);
    }
  },

  QUIT(msg) {
    const nick = splitSource(msg.source).nick;
    for (const conv of this.conversations.values()) {
      if (conv.removeMember(nick)) this.emit("members", conv);
    }
  },

  NICK(msg) {
    const old = splitSource(msg.source).nick;
    const now = msg.params[0];
    if (this.isMe(old)) {
      this.me = now;
      this.emit("me", now);
    }
    for (const conv of this.conversations.values()) {
      const m = conv.members.get(casefold(old));
      if (m) {
        conv.removeMember(old);
        conv.setMember(now, m.modes);
        this.emit("members", conv);
      }
    }
  },

  MODE(msg) {
    const conv = this.conv(msg.params[0], false);
    if (!conv || !conv.isRoom) return;
    let adding = true;
    let arg = 2;
    for (const ch of msg.params[1] || "") {
      if (ch === "+" || ch === "-") { adding = ch === "+"; continue; }
      if (ch === "o" || ch === "v") {
        const nick = msg.params[arg++];
        const m = nick && conv.members.get(casefold(nick));
        if (!m) continue;
        const sign = ch === "o" ? "@" : "+";
        let modes = m.modes.replace(sign, "");
        if (adding) modes = sign === "@" ? "@" + modes : modes + "+";
        m.modes = modes;
      } else if ("beIklfj".includes(ch) && (adding || "beI".includes(ch))) {
        arg++;
      }
    }
    this.emit("members", conv);
  },

  353(msg) {
    const room = msg.params[2];
    const conv = this.conv(room, false);
    if (!conv) return;
    if (!conv.namesInProgress) conv.namesInProgress = new Map();
    for (const item of (msg.params[3] || "").split(" ").filter(Boolean)) {
      const m = /^([@+~&%]*)(.*)$/.exec(item);
      const nick = splitSource(m[2]).nick;
      conv.namesInProgress.set(casefold(nick), { nick, modes: m[1] });
    }
  },
  366(msg) {
    const conv = this.conv(msg.params[1], false);
    if (!conv || !conv.namesInProgress) return;
    conv.members = conv.namesInProgress;
    conv.namesInProgress = null;
    this.emit("members", conv);
  },

  TOPIC(msg) {
    const conv = this.conv(msg.params[0], false);
    if (!conv) return;
    conv.topic = stripFormatting(msg.params[1] || "");
    conv.topicBy = splitSource(msg.source).nick;
    this.info(conv.name, conv.topic ? `${conv.topicBy} set the topic: ${conv.topic}` : `${conv.topicBy} cleared the topic`, "event");
    this.emit("topic", conv);
  },
  331(msg) {
    const conv = this.conv(msg.params[1], false);
    if (conv) { conv.topic = ""; this.emit("topic", conv); }
  },
  332(msg) {
    const conv = this.conv(msg.params[1], false);
    if (conv) { conv.topic = stripFormatting(msg.params[2] || ""); this.emit("topic", conv); }
  },
  333(msg) {
    const conv = this.conv(msg.params[1], false);
    if (conv) { conv.topicBy = splitSource(msg.params[2] || "").nick; this.emit("topic", conv); }
  },

  MARKREAD(msg) {
    const conv = this.conv(msg.params[0], false);
    if (!conv) return;
    const ref = msg.params[1] || "*";
    const ms = ref.startsWith("timestamp=") ? parseStamp(ref.slice(10)) : NaN;
    if (!Number.isNaN(ms)) conv.marker = Math.max(conv.marker ?? 0, ms);
    this.emit("counts", conv);
  },

  REDACT(msg) {
    const [target, msgid] = msg.params;
    const src = splitSource(msg.source);
    const name = isChannel(target) ? target : this.isMe(src.nick) ? target : src.nick;
    const conv = this.conv(name, false);
    if (!conv || !msgid) return;
    const entry = conv.messages.find((m) => m.msgid === msgid);
    if (entry) {
      entry.text = "(message deleted)";
      entry.kind = "event";
      this.emit("messages", { conv, live: false });
    }
  },

  354(msg) {
    // WHO * %tuihnfar,7 -> me token user ip host nick flags account realname
    if (!this.whoRows || msg.params[1] !== "7") return;
    const [, , user, ip, host, nick, flags, account, realname] = msg.params;
    this.whoRows.push({ user, ip, host, nick, flags, account: account === "0" ? "" : account, realname });
  },
  315() {
    if (!this.whoRows) return;
    const rows = this.whoRows;
    this.whoRows = null;
    this.emit("who", rows);
  },

  401(msg) { this.emit("error", `${msg.params[1]}: no one by that name is online`); },
};

/** Live PRIVMSG/NOTICE: the right conversation, once, and echoes matched to their copy. */
Session.prototype.onText = function onText(msg) {
  if (msg.params.length < 2) return;
  const where = this.conversationOf(msg);
  const text = msg.params[1];
  if (where === null || msg.params[0] === "*") {
    // A server's notice: admin replies to the panel, the rest to the active view.
    const plain = stripFormatting(text);
    if (ADMIN_NOTICE.test(plain)) this.emit("admin-notice", plain);
    else if (plain.startsWith("*** ")) this.emit("announcement", plain);
    else this.emit("notice", plain);
    return;
  }
  const src = splitSource(msg.source);
  if (msg.command === "NOTICE" && !isChannel(where) && !this.conv(where, false)) {
    this.emit("notice", `${src.nick}: ${stripFormatting(text)}`);
    return;
  }
  const entry = this.entryOf(msg, true);
  if (!entry) return;
  if (entry.msgid && !this.firstSight(entry.msgid)) return;
  const conv = this.conv(where);
  if (this.isMe(src.nick)) {
    const key = msg.tags.label || `${conv.key}\n${text}`;
    const localId = this.pendingEcho.get(key);
    if (localId) {
      this.pendingEcho.delete(key);
      conv.remove(localId);
    }
    entry.self = true;
    entry.mention = false;
  }
  conv.insert(entry);
  this.emit("messages", { conv, live: true, entry });
  if (!entry.self && TEXT_KINDS.has(entry.kind) && (entry.mention || !conv.isRoom)) {
    this.emit("notify", { conv, entry });
  }
};
