/**
 * Slash commands typed in the message input, irssi style. Pure: a typed line in, an
 * action out; the app carries the action out against the session.
 *
 * @module commands
 */

export const HELP = "Commands: /join #room, /part [reason], /msg nick text, /me action, /topic [text], /nick name, /search words, /quit [reason]";

/**
 * @typedef {{type: string, [key: string]: string}} Action
 * @param {string} line what was typed
 * @param {string} current the active conversation ("" if none)
 * @returns {Action}
 */
export function interpret(line, current) {
  if (!line.startsWith("/") || line.startsWith("//")) {
    return { type: "say", target: current, text: line.startsWith("//") ? line.slice(1) : line };
  }
  const match = /^\/(\S+)\s*(.*)$/s.exec(line);
  const name = match ? match[1].toLowerCase() : "";
  const rest = match ? match[2].trim() : "";
  const [first = "", ...others] = rest.split(/\s+/);
  const after = rest.slice(first.length).trim();
  switch (name) {
    case "join": case "j": {
      if (!first) return { type: "error", text: "Usage: /join #room [key]" };
      const room = first.startsWith("#") ? first : `#${first}`;
      return { type: "join", room, key: others[0] || "" };
    }
    case "part": case "leave": {
      if (first.startsWith("#")) return { type: "part", room: first, reason: after };
      if (!current) return { type: "error", text: "Usage: /part #room [reason]" };
      return { type: "part", room: current, reason: rest };
    }
    case "msg": case "query": {
      if (!first) return { type: "error", text: "Usage: /msg nick [text]" };
      return { type: "msg", target: first, text: after };
    }
    case "me":
      if (!current) return { type: "error", text: "Open a conversation first." };
      if (!rest) return { type: "error", text: "Usage: /me does something" };
      return { type: "action", target: current, text: rest };
    case "topic":
      if (first.startsWith("#")) return after ? { type: "topic", room: first, text: after } : { type: "show-topic", room: first };
      if (!current) return { type: "error", text: "Usage: /topic #room [text]" };
      return rest ? { type: "topic", room: current, text: rest } : { type: "show-topic", room: current };
    case "nick":
      if (!first) return { type: "error", text: "Usage: /nick newname" };
      return { type: "nick", nick: first };
    case "search":
      if (!rest) return { type: "error", text: "Usage: /search words" };
      return { type: "search", text: rest };
    case "quit":
      return { type: "quit", reason: rest || "Leaving" };
    case "help":
      return { type: "error", text: HELP };
    default:
      return { type: "error", text: `Unknown command /${name}. ${HELP}` };
  }
}

/**
 * Tab completion of a nickname at the cursor; pressing Tab again cycles through matches.
 * @param {string} text the input's value
 * @param {number} cursor caret position
 * @param {string[]} nicks candidates, most relevant first
 * @param {{start: number, end: number, stem: string, index: number}|null} state the last
 *   completion while Tab is pressed in a row, else null
 * @returns {{text: string, cursor: number, state: object}|null}
 */
export function completeNick(text, cursor, nicks, state) {
  let start;
  let end;
  let stem;
  let index = 0;
  if (state && state.end === cursor) {
    ({ start, end, stem } = state);
    index = state.index + 1;
  } else {
    const m = /(\S*)$/.exec(text.slice(0, cursor));
    stem = m ? m[1] : "";
    start = cursor - stem.length;
    end = cursor;
  }
  const found = nicks.filter((n) => n.toLowerCase().startsWith(stem.toLowerCase()));
  if (!found.length) return null;
  const pick = found[index % found.length];
  const inserted = pick + (start === 0 ? ": " : " ");
  const value = text.slice(0, start) + inserted + text.slice(end);
  const caret = start + inserted.length;
  return { text: value, cursor: caret, state: { start, end: caret, stem, index } };
}
