// Many jobs at once: the jobs list's selection (checkboxes, or "all jobs
// matching the filter") and its Pause / Resume / Terminate, through
// POST /api/v1/jobs/{action}. The confirmation comes from the service's own
// dry run, so it names how many jobs of which kinds will change.

import { api, ApiError } from "./api.js";
import { confirmDialog, title } from "./jobcard.js";
import { count, h, problemText, toast } from "./ui.js";

const ACTIONS = [
  ["pause", "Pause", "paused", "secondary"],
  ["resume", "Resume", "resumed", "secondary"],
  ["terminate", "Terminate", "terminated", "danger"],
];
const KIND_WORDS = { import: ["import", "imports"], export: ["export", "exports"], teams: ["teams job", "teams jobs"] };

function jobsWord(n) {
  return `${count(n)} ${n === 1 ? "job" : "jobs"}`;
}

/** "2 imports, 1 export" from {import: 2, export: 1}. */
export function kindsText(kinds) {
  return Object.entries(kinds)
    .filter(([, n]) => n)
    .map(([kind, n]) => `${count(n)} ${(KIND_WORDS[kind] || [kind, kind])[n === 1 ? 0 : 1]}`)
    .join(", ");
}

function add(into, from) {
  for (const [key, n] of Object.entries(from || {})) into[key] = (into[key] || 0) + n;
}

/** Every page of one bulk request (the service caps one at 1,000 jobs), summed. */
async function send(action, body, dryRun) {
  const total = { matched: 0, changed: 0, already: 0, refused: 0, refused_states: {}, changed_kinds: {}, changed_ids: [] };
  let after = null;
  do {
    const page = await api("POST", `/api/v1/jobs/${action}${dryRun ? "?dry_run=true" : ""}`, {
      json: after ? { ...body, after } : body,
    });
    for (const key of ["matched", "changed", "already", "refused"]) total[key] += page[key];
    add(total.refused_states, page.refused_states);
    add(total.changed_kinds, page.changed_kinds);
    for (const job of page.jobs || []) if (job.outcome === "changed") total.changed_ids.push(job.id);
    after = page.next;
  } while (after);
  return total;
}

/**
 * The selection bar. `filter()` is the list's current filter as a bulk filter;
 * `onDone()` refreshes the list. Returns {el, attach(card), forget(id)}.
 */
export function bulkBar({ filter, onDone }) {
  const selected = new Map(); // id -> checkbox
  const status = h("span", { class: "bulk-count", role: "status" });
  const all = h("input", { type: "checkbox", id: "select-all-matching", onchange: () => sync() });
  const buttons = ACTIONS.map(([action, label, , tone]) =>
    h("button", { type: "button", class: tone, disabled: true, "aria-label": `${label} the selected jobs`, onclick: () => run(action) }, `${label}…`),
  );
  const el = h(
    "div",
    { class: "bulk", role: "group", "aria-label": "Selected jobs" },
    all,
    h("label", { for: "select-all-matching" }, "Select all jobs matching the filter"),
    status,
    h("span", { class: "bulk-actions" }, buttons),
  );

  function chosen() {
    return [...selected.entries()].filter(([, box]) => box.checked).map(([id]) => id);
  }

  function sync() {
    for (const box of selected.values()) {
      box.disabled = all.checked;
      if (all.checked) box.checked = true;
    }
    const n = chosen().length;
    status.textContent = all.checked ? "every job matching the filter" : n ? `${jobsWord(n)} selected` : "";
    for (const button of buttons) button.disabled = !all.checked && n === 0;
  }

  function body() {
    return { filter: all.checked ? filter() : { ids: chosen() } };
  }

  async function run(action) {
    const [, label, done, tone] = ACTIONS.find(([name]) => name === action);
    try {
      const dry = await send(action, body(), true);
      if (!dry.changed) {
        toast(`None of the ${jobsWord(dry.matched)} selected can be ${done}${dry.already ? ` (${count(dry.already)} already are)` : ""}.`);
        return;
      }
      const lines = [];
      if (dry.already) lines.push(`${jobsWord(dry.already)} already ${done}: left as they are`);
      for (const [state, n] of Object.entries(dry.refused_states)) lines.push(`${jobsWord(n)} ${state}: cannot be ${done}, left as they are`);
      const answer = await confirmDialog({
        id: "bulk",
        heading: `${label} ${jobsWord(dry.changed)}?`,
        text: `${jobsWord(dry.changed)} will be ${done}: ${kindsText(dry.changed_kinds)}.${action === "terminate" ? " Everything they wrote is rolled back." : ""}`,
        lines,
        confirm: `${label} ${jobsWord(dry.changed)}`,
        tone: tone === "danger" ? "danger" : "primary",
      });
      if (!answer) return;
      // Exactly the jobs the confirmation counted (an open filter sent again
      // would also take jobs created or moved since the dry run), at most
      // 1,000 ids a request.
      const result = { changed: 0, already: 0, refused: 0 };
      for (let i = 0; i < dry.changed_ids.length; i += 1000) {
        const confirmed = { filter: { ids: dry.changed_ids.slice(i, i + 1000) } };
        const part = await send(action, answer.reason ? { ...confirmed, reason: answer.reason } : confirmed, false);
        for (const key of Object.keys(result)) result[key] += part[key];
      }
      toast(`${label}: ${jobsWord(result.changed)} ${done}${result.already ? `, ${count(result.already)} already were` : ""}${result.refused ? `, ${count(result.refused)} refused` : ""}.`);
      all.checked = false;
      for (const box of selected.values()) box.checked = false;
      sync();
      onDone();
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) toast(problemText(error), "error");
    }
  }

  return {
    el,
    attach(card) {
      const box = h("input", { type: "checkbox", class: "select", "aria-label": `Select ${title(card.job)}`, onchange: () => sync() });
      box.checked = all.checked;
      box.disabled = all.checked;
      card.el.querySelector("header").prepend(box);
      selected.set(card.job.id, box);
      sync();
    },
    forget(id) {
      selected.delete(id);
      sync();
    },
    reset() {
      all.checked = false;
      sync();
    },
  };
}
