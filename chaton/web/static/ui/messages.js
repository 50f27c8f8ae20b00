/**
 * The message view of the open conversation: day separators, local times, grouping,
 * mentions highlighted, the "new" divider, and asking for older history on scroll-up.
 *
 * Invariant: text from the network reaches the DOM only through `linkify` (text nodes and
 * http(s) anchors) and textContent. The view is rebuilt from the conversation's entries,
 * keeping the reader's place (stuck to the bottom, or the same distance from it).
 *
 * @module ui/messages
 */

import { clear, el } from "./dom.js";
import { clockTime, dayKey, dayLabel, fullTime, linkify } from "../text.js";
import { TEXT_KINDS } from "../conversation.js";

/** Messages by one person less than this apart are grouped under one name. */
const GROUP_MS = 5 * 60 * 1000;

/** A stable hue for a nickname (avatar and name colour). */
export function hueOf(nick) {
  let h = 0;
  for (const ch of nick.toLowerCase()) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

/** An avatar: the first letter on a colour of the nickname's own. */
export function avatar(nick, small = false) {
  const node = el("span", { class: small ? "avatar small" : "avatar", "aria-hidden": "true", text: (nick.match(/[A-Za-z0-9]/)?.[0] || "?").toUpperCase() });
  node.style.setProperty("--hue", String(hueOf(nick)));
  return node;
}

/** Text with the viewer's own nick wrapped in <mark>. */
function highlighter(me) {
  if (!me) return (t) => document.createTextNode(t);
  const escaped = me.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(escaped, "gi");
  return (t) => {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of t.matchAll(re)) {
      if (m.index > last) frag.append(t.slice(last, m.index));
      frag.append(el("mark", { text: m[0] }));
      last = m.index + m[0].length;
    }
    frag.append(t.slice(last));
    return frag;
  };
}

export class MessageView {
  /**
   * @param {HTMLElement} root the scrolling container (role=log)
   * @param {{older: (conv: any) => void, me: () => string}} hooks
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.conv = null;
    this.dividerBefore = null;
    this.empty = root.querySelector("#empty-state");
    root.addEventListener("scroll", () => {
      if (this.conv && root.scrollTop < 60) this.hooks.older(this.conv);
    });
  }

  /** Open `conv` (null: the empty state). */
  show(conv) {
    this.conv = conv;
    // The "New" line goes above what was unread when the conversation was opened, and
    // stays there: lines arriving while it is open are read as they come.
    const upTo = conv ? conv.readUpTo : null;
    const first = conv && conv.messages.find((m) => TEXT_KINDS.has(m.kind) && !m.self
      && (upTo !== null ? m.ms > upTo : m.fresh));
    this.dividerBefore = first ? first.id : null;
    this.render({ toBottom: true });
  }

  /** @param {{toBottom?: boolean}} [how] */
  render(how = {}) {
    const root = this.root;
    const atBottom = how.toBottom || root.scrollHeight - root.scrollTop - root.clientHeight < 40;
    const fromBottom = root.scrollHeight - root.scrollTop;
    clear(root);
    const conv = this.conv;
    if (!conv) {
      root.append(this.empty);
      return;
    }
    root.append(this.head(conv));
    const mark = highlighter(this.hooks.me());
    let lastDay = "";
    let last = null;
    let dividerShown = false;
    for (const m of conv.messages) {
      const day = dayKey(m.ms);
      if (day !== lastDay) {
        root.append(el("div", { class: "day-separator", role: "separator", "aria-label": dayLabel(m.ms) },
          el("span", { text: dayLabel(m.ms) })));
        lastDay = day;
        last = null;
      }
      if (!dividerShown && m.id === this.dividerBefore) {
        root.append(el("div", { class: "new-divider", role: "separator", "aria-label": "New messages" }, el("span", { text: "New" })));
        dividerShown = true;
        last = null;
      }
      const grouped = last && TEXT_KINDS.has(m.kind) && TEXT_KINDS.has(last.kind) && last.nick === m.nick
        && m.ms - last.ms < GROUP_MS && m.kind !== "action" && last.kind !== "action";
      root.append(this.entry(m, grouped, mark));
      last = m;
    }
    if (atBottom) root.scrollTop = root.scrollHeight;
    else root.scrollTop = root.scrollHeight - fromBottom;
    // Too little to scroll: there is no scroll-up to ask for more, so ask now.
    if (!conv.complete && !conv.loadingOlder && root.scrollHeight <= root.clientHeight + 60) {
      queueMicrotask(() => this.hooks.older(conv));
    }
  }

  head(conv) {
    if (conv.loadingOlder) return el("div", { class: "history-edge", role: "status", text: "Loading older messages…" });
    if (conv.complete) {
      return el("div", { class: "history-edge start" },
        el("strong", { text: conv.isRoom ? `This is the start of ${conv.name}` : `This is the start of your conversation with ${conv.name}` }));
    }
    return el("div", { class: "history-edge" },
      el("button", { type: "button", class: "subtle", text: "Load older messages", onclick: () => this.hooks.older(conv) }));
  }

  entry(m, grouped, mark) {
    const time = el("time", { datetime: new Date(m.ms).toISOString(), title: fullTime(m.ms), text: clockTime(m.ms) });
    if (m.kind === "event" || m.kind === "info" || m.kind === "error") {
      return el("div", { class: `event ${m.kind}` }, time, el("span", { class: "event-text", text: m.text }));
    }
    const classes = ["msg", m.kind];
    if (m.self) classes.push("self");
    if (m.mention) classes.push("mention");
    if (m.pending) classes.push("pending");
    if (grouped) classes.push("grouped");
    const text = el("div", { class: "text" });
    if (m.mention) text.append(el("span", { class: "visually-hidden", text: "Mentions you: " }));
    if (m.kind === "action") text.append(el("span", { class: "action-nick", text: `${m.nick} ` }));
    text.append(...linkify(m.text, mark));
    const body = el("div", { class: "body" });
    if (!grouped) {
      const nick = el("span", { class: "nick", text: m.nick });
      nick.style.setProperty("--hue", String(hueOf(m.nick)));
      body.append(el("div", { class: "meta" }, nick, time, m.kind === "notice" ? el("span", { class: "tag", text: "notice" }) : null));
    } else {
      body.append(el("div", { class: "meta visually-hidden" }, el("span", { text: m.nick }), time));
    }
    body.append(text);
    const gutter = grouped ? el("span", { class: "gutter", "aria-hidden": "true", text: clockTime(m.ms) }) : avatar(m.nick);
    return el("article", { class: classes.join(" "), dataset: { msgid: m.msgid || "" } }, gutter, body);
  }
}
