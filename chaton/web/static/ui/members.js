/**
 * The member list of the open room: operators (@), voiced (+), then everyone else, with
 * the actions the viewer may take (message; remove from the room for operators and admins).
 *
 * @module ui/members
 */

import { byId, clear, el } from "./dom.js";
import { avatar } from "./messages.js";

function rank(modes) {
  if (modes.includes("@")) return 0;
  if (modes.includes("+")) return 1;
  return 2;
}

export class MemberList {
  /**
   * @param {any} session
   * @param {{message: (nick: string) => void, kick: (room: string, nick: string) => void}} hooks
   */
  constructor(session, hooks) {
    this.session = session;
    this.hooks = hooks;
    this.list = byId("member-list");
    this.heading = byId("members-heading");
  }

  /** @param {any} conv */
  render(conv) {
    clear(this.list);
    if (!conv || !conv.isRoom) {
      this.heading.textContent = "Members";
      if (conv) this.list.append(el("li", { class: "conv-empty", text: `A private conversation with ${conv.name}` }));
      return;
    }
    const members = [...conv.members.values()].sort((a, b) => rank(a.modes) - rank(b.modes)
      || a.nick.localeCompare(b.nick, undefined, { sensitivity: "base" }));
    this.heading.textContent = `Members (${members.length})`;
    const mine = conv.members.get([...conv.members.keys()].find((k) => this.session.isMe(k)) || "");
    const mayKick = this.session.isOper || (mine && mine.modes.includes("@"));
    const groups = [["Operators", 0], ["Voiced", 1], ["Members", 2]];
    for (const [title, r] of groups) {
      const some = members.filter((m) => rank(m.modes) === r);
      if (!some.length) continue;
      this.list.append(el("li", { class: "member-group", role: "presentation", text: `${title} — ${some.length}` }));
      for (const m of some) {
        const prefix = m.modes.includes("@") ? "@" : m.modes.includes("+") ? "+" : "";
        const me = this.session.isMe(m.nick);
        const status = prefix === "@" ? ", operator" : prefix === "+" ? ", voiced" : "";
        this.list.append(el("li", { class: "member" },
          avatar(m.nick, true),
          el("span", { class: "prefix", "aria-hidden": "true", text: prefix }),
          el("span", { class: "member-nick", text: m.nick }),
          el("span", { class: "visually-hidden", text: status + (me ? ", you" : "") }),
          me ? el("span", { class: "you", text: "you" }) : el("span", { class: "member-actions" },
            el("button", { type: "button", class: "icon-button small", "aria-label": `Message ${m.nick}`, title: "Message", text: "✉", onclick: () => this.hooks.message(m.nick) }),
            mayKick ? el("button", { type: "button", class: "icon-button small danger", "aria-label": `Remove ${m.nick} from ${conv.name}`, title: "Remove from room", text: "⨯", onclick: () => this.hooks.kick(conv.name, m.nick) }) : null)));
      }
    }
  }
}
