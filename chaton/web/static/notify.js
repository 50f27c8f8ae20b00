/**
 * Browser notifications for mentions and private messages while the tab is hidden.
 * Permission is asked only from a user's gesture (the sign-in button), never on load.
 *
 * @module notify
 */

/** Ask once, from a click handler. */
export function askPermission() {
  if (!("Notification" in window) || Notification.permission !== "default") return;
  try {
    Notification.requestPermission().catch(() => {});
  } catch {
    // Old browsers: callback form only; notifications are optional.
  }
}

/** Count of notifications shown (the browser test reads it). */
export const shown = { count: 0 };

/**
 * @param {{conv: any, entry: any}} what
 * @param {(conv: any) => void} open what a click on the notification does
 */
export function notifyIfHidden({ conv, entry }, open) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const title = conv.isRoom ? `${entry.nick} in ${conv.name}` : `${entry.nick} (private)`;
  try {
    const n = new Notification(title, { body: entry.text.slice(0, 200), tag: `chaton-${conv.key}`, icon: "icon.svg" });
    shown.count += 1;
    n.addEventListener("click", () => { window.focus(); open(conv); n.close(); });
  } catch {
    // Some browsers only allow notifications from a service worker; nothing to do.
  }
}
