/**
 * What a person wrote, made safe to show: IRC formatting codes removed, links found.
 *
 * Invariants:
 * - Everything returned is plain data (strings and DOM nodes built with createElement and
 *   textContent). No HTML is ever parsed from a message: `<img onerror=...>` stays text.
 * - A link is made only from an http: or https: URL as `new URL` parses it; `javascript:`,
 *   `data:` and anything else stays text. Links open in a new tab with no opener/referrer.
 *
 * @module text
 */

// Bold, colour (with its digits), hex colour, reset, monospace, reverse, italic,
// strikethrough, underline; then any other C0 control but tab, and DEL.
const FORMATTING = /\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]|[\x00-\x08\x0a-\x1f\x7f]/g;

/** @param {string} text @returns {string} the text without IRC formatting or controls */
export function stripFormatting(text) {
  return text.replace(FORMATTING, "");
}

const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"']+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

/**
 * @param {string} href
 * @returns {URL|null} the URL if it is http(s), else null
 */
export function safeUrl(href) {
  try {
    const url = new URL(href);
    return url.protocol === "http:" || url.protocol === "https:" ? url : null;
  } catch {
    return null;
  }
}

/**
 * Message text as DOM nodes: text nodes, and <a> for http(s) URLs only.
 * @param {string} text already stripped of formatting
 * @param {(part: string) => Node} [textNode] how plain runs are shown (mention marking)
 * @returns {Node[]}
 */
export function linkify(text, textNode = (t) => document.createTextNode(t)) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(URL_CANDIDATE)) {
    let candidate = match[0];
    const trail = candidate.match(TRAILING);
    if (trail && !(trail[0].startsWith(")") && candidate.includes("("))) {
      candidate = candidate.slice(0, candidate.length - trail[0].length);
    }
    const url = safeUrl(candidate);
    if (!url) continue;
    if (match.index > last) out.push(textNode(text.slice(last, match.index)));
    const a = document.createElement("a");
    a.href = url.href;
    a.textContent = candidate;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    out.push(a);
    last = match.index + candidate.length;
  }
  if (last < text.length) out.push(textNode(text.slice(last)));
  return out;
}

/** @param {string} text @param {string} nick @returns {boolean} names `nick` as a word */
export function mentions(text, nick) {
  if (!nick) return false;
  const escaped = nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^A-Za-z0-9_\\-\\[\\]\\\\^{}|\`])${escaped}($|[^A-Za-z0-9_\\-\\[\\]\\\\^{}|\`])`, "i").test(text);
}

/** Times and days in the viewer's own time zone and language. */
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric", year: "numeric" });

/** @param {number} ms @returns {string} e.g. "14:05" */
export function clockTime(ms) { return timeFormat.format(new Date(ms)); }
/** @param {number} ms @returns {string} a tooltip with the full local date and time */
export function fullTime(ms) { return fullFormat.format(new Date(ms)); }

/** @param {number} ms @returns {string} the local calendar day, e.g. "2026-12-03" (a key) */
export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** @param {number} ms @param {number} [now] @returns {string} "Today", "Yesterday" or the date */
export function dayLabel(ms, now = Date.now()) {
  if (dayKey(ms) === dayKey(now)) return "Today";
  if (dayKey(ms) === dayKey(now - 86400000)) return "Yesterday";
  return dayFormat.format(new Date(ms));
}
