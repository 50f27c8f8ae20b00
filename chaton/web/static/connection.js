/**
 * The WebSocket to chaton (`wss://<this host>/ws`, subprotocol text.ircv3.net) and coming
 * back after it drops.
 *
 * Rules (mirroring chaton/client/reconnect.py):
 * - A link that closes without our QUIT is lost and is opened again after a wait that grows
 *   1, 2, 4 ... 30 s, each spread by +/-25 % so a restarted server is not hit by every
 *   browser at once. A link that stayed up 30 s starts the growth anew.
 * - It does not come back when we were sent away on purpose (KILL, ban) or a login failed:
 *   the session calls `stop()` with the reason, and that reason is what the page shows.
 * - One WebSocket message is one IRC line, without CR LF.
 * - When the browser says it is back online, a waiting reconnect is tried at once.
 *
 * @module connection
 */

export const FIRST_DELAY = 1000;
export const MAX_DELAY = 30000;
export const JITTER = 0.25;
export const STABLE_AFTER = 30000;

/** Words a server uses when it means "do not come back". */
const FINAL = /\b(?:killed|kill|banned|ban|[kgzd]-?lined?)\b/i;

/** @param {string} reason a server's ERROR text @returns {boolean} */
export function isFinal(reason) {
  return FINAL.test(reason);
}

export class Connection {
  /**
   * @param {object} hooks
   * @param {() => void} hooks.open a new link is up (register on it)
   * @param {(line: string) => void} hooks.line one line from the server
   * @param {(info: {delay: number, attempt: number, why: string}) => void} hooks.lost
   */
  constructor(hooks) {
    this.hooks = hooks;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.openedAt = 0;
    this.timer = 0;
    this.everOpened = false;
    // Back on the network (laptop lid, train tunnel): try at once instead of waiting.
    window.addEventListener("online", () => this.retryNow());
  }

  get url() {
    return `wss://${location.host}/ws`;
  }

  start() {
    this.stopped = false;
    clearTimeout(this.timer);
    const ws = new WebSocket(this.url, "text.ircv3.net");
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.openedAt = Date.now();
      this.everOpened = true;
      this.hooks.open();
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws || typeof event.data !== "string") return;
      this.hooks.line(event.data);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.openedAt && Date.now() - this.openedAt >= STABLE_AFTER) this.attempt = 0;
      this.openedAt = 0;
      const base = Math.min(MAX_DELAY, FIRST_DELAY * 2 ** Math.min(this.attempt, 20));
      const delay = base * (1 - JITTER + Math.random() * 2 * JITTER);
      this.attempt += 1;
      const why = event.reason || (event.code === 1006 ? "connection lost" : `closed (${event.code})`);
      this.hooks.lost({ delay, attempt: this.attempt, why });
      this.timer = setTimeout(() => this.start(), delay);
    });
  }

  /** @param {string} line */
  send(line) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(line);
      return true;
    }
    return false;
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Close for good: no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  /** Try again now (the "Reconnect now" button). */
  retryNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.start();
  }
}
