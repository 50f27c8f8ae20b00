/**
 * IRC lines as data: parse and serialize one line (IRCv3 message tags included).
 *
 * Invariants:
 * - `serialize` is the only way the app builds a line. It refuses a parameter that holds
 *   CR, LF or NUL (no client-side line injection), and only the last parameter may contain
 *   a space or start with ":".
 * - Tag values are escaped and unescaped exactly as IRCv3 message-tags says
 *   (`\:` `\s` `\\` `\r` `\n`; a lone trailing backslash is dropped).
 * - Nothing here touches the DOM or the network.
 *
 * @module irc
 */

const TAG_ESCAPES = { ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" };

/** @param {string} value an escaped tag value @returns {string} */
export function unescapeTag(value) {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c !== "\\") { out += c; continue; }
    i++;
    if (i >= value.length) break;
    out += TAG_ESCAPES[value[i]] ?? value[i];
  }
  return out;
}

/** @param {string} value @returns {string} */
export function escapeTag(value) {
  return value.replace(/[\\; \r\n]/g, (c) => ({ "\\": "\\\\", ";": "\\:", " ": "\\s", "\r": "\\r", "\n": "\\n" })[c]);
}

/**
 * @typedef {object} Message
 * @property {Record<string,string>} tags
 * @property {string} source  nick!user@host or a server name; "" when absent
 * @property {string} command upper-cased
 * @property {string[]} params
 */

/** @param {string} line one line without CR LF @returns {Message} */
export function parse(line) {
  let rest = line.replace(/[\r\n]+$/, "");
  /** @type {Record<string,string>} */
  const tags = {};
  if (rest.startsWith("@")) {
    const end = rest.indexOf(" ");
    const raw = end < 0 ? rest.slice(1) : rest.slice(1, end);
    rest = end < 0 ? "" : rest.slice(end + 1);
    for (const item of raw.split(";")) {
      if (!item) continue;
      const eq = item.indexOf("=");
      if (eq < 0) tags[item] = "";
      else tags[item.slice(0, eq)] = unescapeTag(item.slice(eq + 1));
    }
  }
  rest = rest.replace(/^ +/, "");
  let source = "";
  if (rest.startsWith(":")) {
    const end = rest.indexOf(" ");
    source = end < 0 ? rest.slice(1) : rest.slice(1, end);
    rest = end < 0 ? "" : rest.slice(end + 1);
  }
  const params = [];
  let command = "";
  while (rest.length) {
    rest = rest.replace(/^ +/, "");
    if (!rest.length) break;
    if (command && rest.startsWith(":")) { params.push(rest.slice(1)); break; }
    const end = rest.indexOf(" ");
    const word = end < 0 ? rest : rest.slice(0, end);
    rest = end < 0 ? "" : rest.slice(end + 1);
    if (!command) command = word.toUpperCase(); else params.push(word);
  }
  return { tags, source, command, params };
}

/**
 * @param {string} command
 * @param {string[]} [params]
 * @param {Record<string,string>} [tags]
 * @returns {string}
 */
export function serialize(command, params = [], tags = {}) {
  if (!/^[A-Za-z0-9]+$/.test(command)) throw new Error("bad command");
  let line = "";
  const tagText = Object.entries(tags)
    .map(([k, v]) => (v === "" ? k : `${k}=${escapeTag(v)}`)).join(";");
  if (tagText) line += "@" + tagText + " ";
  line += command;
  params.forEach((p, i) => {
    if (/[\r\n\0]/.test(p)) throw new Error("a parameter cannot hold CR, LF or NUL");
    const last = i === params.length - 1;
    if (last && (p === "" || p.includes(" ") || p.startsWith(":"))) line += " :" + p;
    else if (p === "" || p.includes(" ") || p.startsWith(":")) throw new Error("bad middle parameter");
    else line += " " + p;
  });
  return line;
}

/** "nick!user@host" -> {nick, user, host}; a server name has no user. */
export function splitSource(source) {
  const bang = source.indexOf("!");
  const at = source.indexOf("@");
  if (bang < 0) return { nick: at < 0 ? source : source.slice(0, at), user: "", host: at < 0 ? "" : source.slice(at + 1) };
  return { nick: source.slice(0, bang), user: source.slice(bang + 1, at < 0 ? undefined : at), host: at < 0 ? "" : source.slice(at + 1) };
}

/** rfc1459 casemapping (the server's CASEMAPPING), so names equal there are equal here. */
export function casefold(name) {
  return name.toLowerCase().replace(/[[\]\\~]/g, (c) => ({ "[": "{", "]": "}", "\\": "|", "~": "^" })[c]);
}

/** @param {string} name @returns {boolean} addressed as a room (CHANTYPES=#) */
export function isChannel(name) {
  return name.startsWith("#");
}

/** Base64 of UTF-8 text (SASL PLAIN payloads). */
export function base64Utf8(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** AUTHENTICATE lines for SASL PLAIN: 400-byte chunks, "+" after an exact multiple. */
export function saslPlainLines(account, password) {
  const data = base64Utf8(`${account}\0${account}\0${password}`);
  const chunks = [];
  for (let i = 0; i < data.length; i += 400) chunks.push(data.slice(i, i + 400));
  if (!chunks.length || chunks[chunks.length - 1].length === 400) chunks.push("+");
  return chunks;
}

/** A Date as IRCv3 server-time: YYYY-MM-DDThh:mm:ss.sssZ. */
export function utcStamp(date) {
  return date.toISOString();
}

/** A server-time stamp as milliseconds since the epoch, or NaN. */
export function parseStamp(stamp) {
  if (!stamp || !/^[0-9][0-9T:.+\-]*Z?$/.test(stamp)) return NaN;
  return Date.parse(stamp);
}
