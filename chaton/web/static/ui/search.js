/**
 * The search panel: SEARCH (draft/search) over what the viewer may read; each result opens
 * its conversation.
 *
 * @module ui/search
 */

import { byId, clear, el } from "./dom.js";
import { clockTime, dayLabel, linkify } from "../text.js";

export class SearchPanel {
  /**
   * @param {any} session
   * @param {{open: (name: string) => void, active: () => any}} hooks
   */
  constructor(session, hooks) {
    this.session = session;
    this.hooks = hooks;
    this.form = byId("search-form");
    this.text = byId("search-text");
    this.here = byId("search-here");
    this.status = byId("search-status");
    this.results = byId("search-results");
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.run(this.text.value);
    });
    session.on("search", (r) => this.show(r));
  }

  run(words) {
    const text = words.trim();
    if (!text) return;
    this.text.value = text;
    if (!this.session.caps.has("draft/search")) {
      this.status.textContent = "This server does not offer search.";
      return;
    }
    const active = this.hooks.active();
    this.session.search(text, this.here.checked && active ? active.name : "");
    this.status.textContent = `Searching for “${text}”…`;
    clear(this.results);
  }

  show({ query, results, error }) {
    clear(this.results);
    if (error) { this.status.textContent = error; return; }
    this.status.textContent = results.length
      ? `${results.length} result${results.length === 1 ? "" : "s"} for “${query}”`
      : `Nothing found for “${query}”`;
    for (const { where, entry } of results) {
      this.results.append(el("li", {},
        el("button", { type: "button", class: "result", onclick: () => where && this.hooks.open(where) },
          el("span", { class: "result-meta" },
            el("strong", { text: where || "?" }), " · ", entry.nick, " · ", `${dayLabel(entry.ms)} ${clockTime(entry.ms)}`),
          el("span", { class: "result-text" }, ...linkify(entry.text)))));
    }
  }
}
