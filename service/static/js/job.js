// One job: its parameters, live progress, row errors, guard findings,
// history, and the download of a finished export.

import { api } from "./api.js";
import { downloadResult } from "./download.js";
import { JobCard, isFinished } from "./jobcard.js";
import { follow } from "./live.js";
import { clear, bytes, count, h, plain, problemText, table, time, toast } from "./ui.js";
import { findingsList } from "./report.js";

const PARAM_LABELS = {
  dataset: "Dataset",
  filename: "File",
  file_bytes: "File size",
  rows: "Rows in file",
  header: "Header",
  columns: "Columns",
  column_mapping: "Renamed columns",
  types: "Types",
  null_values: "Null markers",
  guard: "Guard",
  batch_size: "Batch size",
  on_error: "On a bad row",
  max_errors: "Max row errors",
  region: "Phone region",
  date_field: "Date field",
  from: "From",
  to: "To (exclusive)",
  neutralize: "Neutralise formulas",
  stream: "Streamed download",
  types_auto: "Types chosen from the file",
  inferred_types: "Types found in the file",
  formats: "Date formats",
  header_mode: "Header check",
  include_failed: "Include failed imports",
  jobs: "Imports read",
  imports: "Imports read",
};
// Internal bookkeeping a person has no use for.
const HIDDEN_PARAMS = new Set(["file_id", "data_start", "layout", "width", "expected_rows", "row_bytes", "created_list", "imports_as_of", "imports_digest"]);
const ACTION_LABELS = {
  "job.create": "Created",
  "job.pause": "Pause",
  "job.resume": "Resume",
  "job.terminate": "Terminate",
  "job.retry": "Retry",
  "job.undo": "Undo",
  "job.delete": "Delete",
};

function paramsList(job) {
  const params = job.params || {};
  const rows = [];
  for (const [key, value] of Object.entries(params)) {
    if (HIDDEN_PARAMS.has(key) || value === null || value === undefined || value === "") continue;
    if (typeof value === "object" && Object.keys(value).length === 0) continue;
    if (key === "header" && plain(value) === plain(params.columns)) continue;
    let shown = key === "file_bytes" ? bytes(value) : key === "rows" ? count(value) : plain(value);
    if (key === "jobs" && Array.isArray(value)) shown = `${count(value.length)} completed import${value.length === 1 ? "" : "s"}`;
    if (key === "imports" && params.imports_as_of) shown = `${count(value)} import${value === 1 ? "" : "s"} finished by ${time(params.imports_as_of)}`;
    if (typeof value === "boolean") shown = value ? "yes" : "no";
    rows.push(h("dt", {}, PARAM_LABELS[key] || key), h("dd", {}, shown));
  }
  rows.push(h("dt", {}, "Created"), h("dd", {}, time(job.created_at)));
  if (job.created_by) rows.push(h("dt", {}, "Created by"), h("dd", {}, plain(job.created_by.name || job.created_by.actor_name || job.created_by.actor || job.created_by)));
  if (job.started_at) rows.push(h("dt", {}, "Started"), h("dd", {}, time(job.started_at)));
  if (job.finished_at) rows.push(h("dt", {}, "Finished"), h("dd", {}, time(job.finished_at)));
  if (job.owner) rows.push(h("dt", {}, "Running on"), h("dd", {}, job.owner));
  rows.push(h("dt", {}, "Job id"), h("dd", {}, h("code", {}, job.id)));
  return h("dl", { class: "params" }, rows);
}

function errorsSection(job) {
  const errors = job.errors || [];
  const failed = (job.progress || {}).failed || 0;
  if (!errors.length) return h("p", {}, failed ? `${count(failed)} rows failed.` : "No row errors.");
  const columns = [
    ["line", "Line"],
    ["row", "Row"],
  ];
  if (errors.some((e) => e.kind)) columns.push(["kind", "Kind"]);
  columns.push(["message", "Message"]);
  const caption = failed > errors.length ? `The first ${count(errors.length)} of ${count(failed)} row errors` : `${count(errors.length)} row errors`;
  return table(errors, columns, caption);
}

function findingsSection(job) {
  const reason = job.pause_reason;
  const findings = job.findings || (reason && reason.findings) || [];
  if (!reason && !findings.length) return null;
  let why = null;
  if (reason && typeof reason === "object" && reason.by === "guard") {
    // Only a paused job can still be resumed: offer nothing that no longer applies.
    why =
      job.state === "paused"
        ? `Paused by the guard before writing anything, after checking ${count(reason.rows_checked)} rows: resume to import anyway, or terminate.`
        : `The guard paused it before it wrote anything, after checking ${count(reason.rows_checked)} rows.`;
  } else if (reason && job.state === "paused") {
    why = `Paused: ${typeof reason === "string" ? reason : plain(reason.message || reason)}`;
  }
  return h(
    "section",
    { class: "findings-section" },
    h("h2", {}, "Guard findings"),
    why ? h("p", { class: "pause-reason" }, why) : null,
    findings.length ? h("div", { class: "alert danger" }, findingsList(findings.map((f) => ({ ...f, evidence: plain(f.evidence) })))) : null,
  );
}

function historySection(job) {
  const history = job.history || [];
  if (!history.length) return null;
  const columns = [
    [(e) => time(e.at || e.time || e.created_at), "When"],
    [(e) => e.actor_name || e.actor, "Who"],
    [(e) => ACTION_LABELS[e.action] || e.action, "Did"],
    [(e) => [e.state_before ?? e.from, e.state_after ?? e.to].filter(Boolean).join(" → "), "State"],
    ["reason", "Reason"],
  ];
  return h("section", {}, h("h2", {}, "History"), table(history, columns));
}

/** A rollback that has failed: attempts, the last error, since when, and the org's slot. */
function rollbackSection(job) {
  const r = job.rollback;
  if (!r || !r.attempts || !["terminating", "undoing"].includes(job.state)) return null;
  const rows = [
    ["Attempts", count(r.attempts)],
    ["Last error", r.error || "–"],
    ["Failing without progress since", r.failing_since ? time(r.failing_since) : "– (its last attempt made progress)"],
    ["Next attempt", r.next_attempt_at ? time(r.next_attempt_at) : "at once"],
  ];
  if (job.kind === "import" || job.kind === "teams") {
    rows.push([
      `The org's ${job.kind} slot`,
      r.slot_released
        ? `Released: the rollback failed without progress for too long (ROLLBACK_GIVE_UP_SECONDS), so the org's next ${job.kind} jobs may start. It keeps trying.`
        : `Held until the rollback succeeds or has failed without progress for ROLLBACK_GIVE_UP_SECONDS; the org's next ${job.kind} job waits.`,
    ]);
  }
  return h(
    "section",
    { class: "rollback-section" },
    h("h2", {}, "Rollback"),
    h("p", { class: "problem" }, "The rollback has not succeeded yet. It backs off and tries again by itself, on any replica; nothing needs doing unless it keeps failing (then look at the database)."),
    h("dl", { class: "params" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  );
}

function resultSection(job) {
  if (job.kind !== "export" || (job.params || {}).stream) return null;
  const ready = job.state === "completed";
  return h(
    "section",
    {},
    h("h2", {}, "Result"),
    ready
      ? h(
          "p",
          {},
          h("button", { type: "button", class: "primary", onclick: () => downloadResult(job).catch((e) => toast(problemText(e), "error")) }, `Download ${job.params.filename || "the CSV"}`),
          job.result && job.result.bytes ? ` ${bytes(job.result.bytes)}` : "",
        )
      : h("p", {}, job.state === "terminated" ? "Terminated: the file was deleted." : "The file can be downloaded once the export is completed."),
  );
}

export async function jobView(root, { me, id, signal }) {
  clear(root, h("p", { class: "loading" }, "Loading the job…"));
  let job;
  try {
    job = await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}`, { signal });
  } catch (error) {
    if (signal.aborted) return;
    clear(root, h("h1", { tabindex: "-1" }, "Job not found"), h("p", { class: "problem", role: "alert" }, problemText(error)), h("p", {}, h("a", { href: "#/jobs" }, "Back to the jobs")));
    return;
  }
  const details = h("div", { class: "job-details" });
  let shown = "";
  const renderDetails = (fresh) => {
    // Re-rendered only when something in them changed, not on every tick.
    const key = JSON.stringify([fresh.state, fresh.params, fresh.errors, fresh.history, fresh.pause_reason, fresh.findings, fresh.result, fresh.links, fresh.owner, fresh.finished_at, fresh.rollback]);
    if (key === shown) return;
    shown = key;
    clear(
      details,
      rollbackSection(fresh),
      resultSection(fresh),
      findingsSection(fresh),
      h("section", {}, h("h2", {}, "Parameters"), paramsList(fresh)),
      h("section", {}, h("h2", {}, "Row errors"), errorsSection(fresh)),
      historySection(fresh),
    );
  };
  // Followed live while active, and again once an undo makes a finished job active.
  let card = null;
  let following = false;
  async function keepUp() {
    following = true;
    await follow(job.id, (fresh) => card.update(fresh), signal);
    following = false;
    // The stream's last event can precede the final write of errors or history.
    if (!signal.aborted) card.update(await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}`, { signal }));
  }
  // Live updates carry no history: the card keeps the last one, and a change of
  // state (someone paused, resumed, terminated) reads the job again for its new entries.
  let lastState = job.state;
  const onUpdate = (fresh) => {
    renderDetails(fresh);
    if (fresh.state !== lastState) {
      lastState = fresh.state;
      api("GET", `/api/v1/jobs/${encodeURIComponent(id)}`, { signal })
        .then((full) => card && card.update(full))
        .catch(() => {});
    }
    if (card && !following && !isFinished(fresh) && !signal.aborted) keepUp();
  };
  card = new JobCard(job, { me, link: false, onUpdate });
  clear(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "← Jobs")),
    h("h1", { tabindex: "-1" }, `${job.kind[0].toUpperCase()}${job.kind.slice(1)} job`),
    card.el,
    details,
  );
  renderDetails(job);
  if (!isFinished(job)) await keepUp();
}
