/**
 * The admin panel: admin login (OPER), people online (WHO with WHOX fields), disconnect
 * (KILL), ban (UBAN ADD), unban (UBAN DEL), the ban list (UBAN LIST) and the audit log
 * (AUDIT). The server answers these with NOTICEs, collected here until their "End of"
 * line; the server decides every permission, this panel only asks.
 *
 * Reply formats relied on (chaton/server/admin.py):
 *   "Ban: <target> - <reason> - by <actor> on <date>, <expiry>" ... "End of ban list (<n> in force)"
 *   "Audit: <ISO time> <actor> <action> <target>[: <reason>]" ... "End of audit log (<n> shown)"
 *   "Banned <targets> <for...|permanently>[; disconnected <nicks>]", "Killed <nick>: <reason>",
 *   "Removed the ban on <target>"
 *
 * @module ui/admin
 */

import { announce, byId, clear, el } from "./dom.js";
import { fullTime } from "../text.js";

const AUDIT_LINE = /^Audit: (\S+) (\S+) (\S+) (\S+?)(?:: (.*))?$/;

export class AdminPanel {
  /** @param {any} session */
  constructor(session) {
    this.session = session;
    this.root = byId("admin-panel");
    this.operForm = byId("oper-form");
    this.operError = byId("oper-error");
    this.tools = byId("admin-tools");
    this.status = byId("admin-status");
    this.reason = byId("admin-reason");
    this.duration = byId("admin-duration");
    this.online = byId("online-list");
    this.bans = byId("ban-list");
    this.audit = byId("audit-list");
    this.banLines = [];
    this.auditLines = [];

    this.operForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = byId("oper-name").value.trim();
      const password = byId("oper-password").value;
      if (!name || !password) { this.operError.textContent = "Give the admin name and password."; return; }
      this.operError.textContent = "";
      session.oper(name, password);
      byId("oper-password").value = "";
    });
    byId("refresh-online").addEventListener("click", () => session.who());
    byId("refresh-bans").addEventListener("click", () => this.loadBans());
    byId("refresh-audit").addEventListener("click", () => this.loadAudit());

    session.on("oper", () => {
      this.render();
      this.refresh();
      announce("Admin powers on");
    });
    session.on("operfailed", (text) => { this.operError.textContent = `Admin login refused: ${text}`; });
    session.on("who", (rows) => this.showOnline(rows));
    session.on("admin-notice", (text) => this.onNotice(text));
    session.on("admin-error", (text) => this.say(text, true));
    // "*** alice ban.add account:bob (...)": what admins do, announced to every admin.
    session.on("announcement", (text) => { if (session.isOper) this.say(text.replace(/^\*\*\* /, "")); });
    session.on("registered", () => this.render());
  }

  render() {
    const oper = this.session.isOper;
    this.operForm.hidden = oper;
    this.tools.hidden = !oper;
  }

  refresh() {
    this.session.who();
    this.loadBans();
    this.loadAudit();
  }

  loadBans() {
    this.banLines = [];
    this.session.send("UBAN", ["LIST"]);
  }

  loadAudit() {
    this.auditLines = [];
    this.session.send("AUDIT", ["50"]);
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
    announce(text);
  }

  /** UBAN ADD <target> [DURATION <d>] [<reason>] with the panel's reason and duration. */
  ban(target) {
    const params = ["ADD", target];
    if (this.duration.value) params.push("DURATION", this.duration.value);
    const reason = this.reason.value.trim();
    if (reason) params.push(reason);
    this.session.send("UBAN", params);
  }

  kill(nick) {
    this.session.send("KILL", [nick, this.reason.value.trim() || "Removed by an admin"]);
  }

  onNotice(text) {
    if (text.startsWith("Ban: ")) { this.banLines.push(text.slice(5)); return; }
    if (text.startsWith("End of ban list")) { this.showBans(); return; }
    if (text.startsWith("Audit: ")) { this.auditLines.push(text); return; }
    if (text.startsWith("End of audit log")) { this.showAudit(); return; }
    if (text.startsWith("(the ")) { this.say(text); return; }
    this.say(text);
    this.refresh();
  }

  showOnline(rows) {
    clear(this.online);
    rows.sort((a, b) => a.nick.localeCompare(b.nick, undefined, { sensitivity: "base" }));
    for (const r of rows) {
      const me = this.session.isMe(r.nick);
      const target = r.account ? `account:${r.account}` : r.nick;
      this.online.append(el("li", { class: "admin-row", dataset: { nick: r.nick } },
        el("div", { class: "admin-row-main" },
          el("span", { class: "admin-title" },
            el("strong", { class: "admin-nick", text: r.nick }),
            r.flags.includes("*") ? el("span", { class: "tag", text: "admin" }) : null),
          el("span", { class: "admin-detail", text: `${r.account ? `account ${r.account}` : "guest"} · ${r.ip && r.ip !== "255.255.255.255" ? r.ip : r.host}` })),
        me ? el("span", { class: "you", text: "you" }) : el("div", { class: "admin-row-actions" },
          el("button", { type: "button", class: "danger-outline", text: "Kick", "aria-label": `Disconnect ${r.nick} from the server`, onclick: () => this.kill(r.nick) }),
          el("button", { type: "button", class: "danger", text: "Ban", "aria-label": `Ban ${r.account ? `account ${r.account}` : r.nick}`, onclick: () => this.ban(target) }))));
    }
    if (!rows.length) this.online.append(el("li", { class: "conv-empty", text: "No one online" }));
  }

  showBans() {
    clear(this.bans);
    for (const line of this.banLines) {
      const [target, ...rest] = line.split(" - ");
      this.bans.append(el("li", { class: "admin-row", dataset: { target } },
        el("div", { class: "admin-row-main" },
          el("strong", { class: "admin-nick", text: target }),
          el("span", { class: "admin-detail", text: rest.join(" - ") })),
        el("div", { class: "admin-row-actions" },
          el("button", { type: "button", class: "danger-outline", text: "Unban", "aria-label": `Remove the ban on ${target}`, onclick: () => this.session.send("UBAN", ["DEL", target]) }))));
    }
    if (!this.banLines.length) this.bans.append(el("li", { class: "conv-empty", text: "No bans in force" }));
    this.banLines = [];
  }

  showAudit() {
    clear(this.audit);
    for (const line of [...this.auditLines].reverse()) {
      const m = AUDIT_LINE.exec(line);
      if (!m) { this.audit.append(el("li", { text: line.slice(7) })); continue; }
      const [, when, actor, action, target, reason] = m;
      const ms = Date.parse(when);
      this.audit.append(el("li", { class: "audit-row" },
        el("time", { datetime: when, title: Number.isNaN(ms) ? when : fullTime(ms), text: Number.isNaN(ms) ? when : new Date(ms).toLocaleString() }),
        el("span", { class: "audit-text" }, el("strong", { text: actor }), ` ${action} `, el("strong", { text: target }), reason ? `: ${reason}` : "")));
    }
    if (!this.auditLines.length) this.audit.append(el("li", { class: "conv-empty", text: "The audit log is empty" }));
    this.auditLines = [];
  }
}
