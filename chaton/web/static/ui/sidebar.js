/**
 * The conversation list (rooms, then private conversations) with unread counts and mention
 * badges, and the quick switcher (Ctrl+K).
 *
 * @module ui/sidebar
 */

import { byId, clear, el } from "./dom.js";
import { avatar } from "./messages.js";

/** Rooms first, then private conversations, each by name. */
export function ordered(session) {
  const all = [...session.conversations.values()];
  const byName = (a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: "base" });
  return {
    rooms: all.filter((c) => c.isRoom).sort(byName),
    dms: all.filter((c) => !c.isRoom).sort(byName),
  };
}

export class Sidebar {
  /**
   * @param {any} session
   * @param {{open: (conv: any) => void, active: () => any}} hooks
   */
  constructor(session, hooks) {
    this.session = session;
    this.hooks = hooks;
    this.rooms = byId("room-list");
    this.dms = byId("dm-list");
  }

  render() {
    const { rooms, dms } = ordered(this.session);
    this.fill(this.rooms, rooms, "No rooms yet");
    this.fill(this.dms, dms, "No conversations yet");
    const total = [...rooms, ...dms].reduce((n, c) => n + c.counts().unread, 0);
    document.title = total ? `(${total}) chaton` : "chaton";
  }

  fill(list, convs, emptyText) {
    clear(list);
    if (!convs.length) {
      list.append(el("li", { class: "conv-empty", text: emptyText }));
      return;
    }
    const active = this.hooks.active();
    for (const conv of convs) {
      const { unread, mentions } = conv.counts();
      const label = [conv.name];
      if (unread) label.push(`${unread} unread`);
      if (mentions) label.push(`${mentions} mention${mentions === 1 ? "" : "s"}`);
      if (conv.isRoom && !conv.joined) label.push("not joined");
      const button = el("button", {
        type: "button",
        class: ["conv", conv === active ? "active" : "", unread ? "unread" : "", conv.isRoom && !conv.joined ? "parted" : ""].join(" ").trim(),
        "aria-current": conv === active ? "page" : null,
        "aria-label": label.join(", "),
        dataset: { conv: conv.name },
        onclick: () => this.hooks.open(conv),
      },
      conv.isRoom ? el("span", { class: "hash", "aria-hidden": "true", text: "#" }) : avatar(conv.name, true),
      el("span", { class: "conv-name", text: conv.isRoom ? conv.name.slice(1) : conv.name }),
      mentions ? el("span", { class: "badge mention-badge", "aria-hidden": "true", text: String(mentions) }) : null,
      unread && !mentions ? el("span", { class: "badge unread-badge", "aria-hidden": "true", text: String(unread) }) : null);
      list.append(el("li", {}, button));
    }
  }
}

/** The Ctrl+K switcher: type to filter, arrows to choose, Enter to open, Escape to close. */
export class Switcher {
  constructor(session, open) {
    this.session = session;
    this.openConv = open;
    this.root = byId("switcher");
    this.input = byId("switcher-input");
    this.list = byId("switcher-list");
    this.index = 0;
    this.items = [];
    this.input.addEventListener("input", () => { this.index = 0; this.render(); });
    this.input.addEventListener("keydown", (e) => this.key(e));
    this.root.addEventListener("click", (e) => { if (e.target === this.root) this.close(); });
  }

  open() {
    this.previous = document.activeElement;
    this.root.hidden = false;
    this.input.value = "";
    this.index = 0;
    this.render();
    this.input.focus();
  }

  close() {
    this.root.hidden = true;
    if (this.previous && this.previous.focus) this.previous.focus();
  }

  render() {
    const { rooms, dms } = ordered(this.session);
    const q = this.input.value.trim().toLowerCase().replace(/^#/, "");
    this.items = [...rooms, ...dms].filter((c) => c.name.toLowerCase().replace(/^#/, "").includes(q));
    clear(this.list);
    this.items.forEach((conv, i) => {
      const { unread } = conv.counts();
      this.list.append(el("li", {
        role: "option", id: `switch-${i}`, "aria-selected": i === this.index ? "true" : "false",
        class: i === this.index ? "selected" : "", onclick: () => { this.close(); this.openConv(conv); },
      }, el("span", { text: conv.name }), unread ? el("span", { class: "badge unread-badge", text: String(unread) }) : null));
    });
    this.input.setAttribute("aria-activedescendant", this.items.length ? `switch-${this.index}` : "");
  }

  key(e) {
    if (e.key === "Escape") { e.preventDefault(); this.close(); return; }
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = this.items.length || 1;
      this.index = (this.index + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.render();
      return;
    }
    if (e.key === "Enter") {
      e.preventDefault();
      const conv = this.items[this.index];
      this.close();
      if (conv) this.openConv(conv);
    }
  }
}
