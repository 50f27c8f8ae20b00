/**
 * One conversation (a room or a private one) as the page knows it: its messages in time
 * order, members, topic, and how much of it is unread.
 *
 * Invariants:
 * - A message id is kept at most once: live, echoed or from history, it is one entry.
 * - `messages` stays sorted by server time (history arrives before, after or between the
 *   live lines; insertion puts each where it belongs).
 * - Unread counts are derived, never kept: messages by others newer than the read marker
 *   (the account's, shared with its other devices, or this page's own reading). Without
 *   any marker, only what arrived while this page was open (live or gap fill) counts.
 *
 * @module conversation
 */

import { casefold, isChannel } from "./irc.js";

/** Kinds of entries that people wrote (counted as unread, searched, notified). */
export const TEXT_KINDS = new Set(["msg", "action", "notice"]);

let localIds = 0;

/**
 * @typedef {object} Entry
 * @property {string} id        unique within the page (the msgid when there is one)
 * @property {string} msgid
 * @property {number} ms        server time in ms since the epoch
 * @property {string} stamp     the server's own time string (sent back in MARKREAD)
 * @property {string} nick
 * @property {string} kind      msg | action | notice | event | info
 * @property {string} text      formatting already stripped
 * @property {boolean} self
 * @property {boolean} mention
 * @property {boolean} fresh    arrived while this page was open (live or a gap fill)
 * @property {boolean} [pending] sent, waiting for the server's echo
 * @property {string} [label]
 */

/** @returns {string} an id for an entry without a msgid */
export function localId() {
  localIds += 1;
  return `local-${localIds}`;
}

export class Conversation {
  /** @param {string} name */
  constructor(name) {
    this.name = name;
    this.key = casefold(name);
    this.isRoom = isChannel(name);
    this.joined = false;
    this.topic = "";
    this.topicBy = "";
    /** @type {Map<string, {nick: string, modes: string}>} casefolded nick -> member */
    this.members = new Map();
    /** @type {Map<string, {nick: string, modes: string}>} while a NAMES reply arrives */
    this.namesInProgress = null;
    /** @type {Entry[]} */
    this.messages = [];
    /** @type {Set<string>} */
    this.ids = new Set();
    /** Read marker (ms) from the server, or null when none was ever set. */
    this.marker = null;
    /** What this page has shown as read (ms), or null. */
    this.readHere = null;
    /** No older history exists (a LATEST/BEFORE came back short). */
    this.complete = false;
    this.loadingOlder = false;
    this.historyAsked = false;
    /** Joined before the link dropped: JOIN it again and fill the gap. */
    this.rejoin = false;
  }

  /** @returns {Entry|undefined} the newest entry with a server time stamp */
  newestStamped() {
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const m = this.messages[i];
      if (m.stamp && !m.pending) return m;
    }
    return undefined;
  }

  /** @returns {Entry|undefined} the oldest entry from the server */
  oldestStamped() {
    return this.messages.find((m) => m.stamp && !m.pending);
  }

  /**
   * Put `entry` where its time says; false if its msgid is already there.
   * @param {Entry} entry
   */
  insert(entry) {
    if (this.ids.has(entry.id)) return false;
    this.ids.add(entry.id);
    const list = this.messages;
    let i = list.length;
    while (i > 0 && list[i - 1].ms > entry.ms) i--;
    list.splice(i, 0, entry);
    if (list.length > 5000) {
      const dropped = list.splice(0, list.length - 5000);
      for (const d of dropped) this.ids.delete(d.id);
      this.complete = false;
    }
    return true;
  }

  /** @param {string} id */
  remove(id) {
    const i = this.messages.findIndex((m) => m.id === id);
    if (i >= 0) {
      this.messages.splice(i, 1);
      this.ids.delete(id);
    }
  }

  /** The time up to which this conversation counts as read, or null. */
  get readUpTo() {
    if (this.marker === null && this.readHere === null) return null;
    return Math.max(this.marker ?? 0, this.readHere ?? 0);
  }

  /** @returns {{unread: number, mentions: number}} */
  counts() {
    const upTo = this.readUpTo;
    let unread = 0;
    let mentions = 0;
    for (const m of this.messages) {
      if (m.self || m.pending || !TEXT_KINDS.has(m.kind)) continue;
      if (upTo !== null ? m.ms <= upTo : !m.fresh) continue;
      unread += 1;
      if (m.mention || !this.isRoom) mentions += 1;
    }
    return { unread, mentions };
  }

  /** @param {string} nick @param {string} modes */
  setMember(nick, modes = "") {
    this.members.set(casefold(nick), { nick, modes });
  }

  /** @param {string} nick */
  removeMember(nick) {
    return this.members.delete(casefold(nick));
  }

  /** @param {string} nick */
  hasMember(nick) {
    return this.members.has(casefold(nick));
  }
}
