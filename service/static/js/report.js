// Dry-run reports: what a job would do, with what looks wrong shown first.

import { count, h, plain, table } from "./ui.js";

/** Findings ({kind, message, evidence}) as highlighted items. */
/** Text whose `names` are code: shown as <code>, never as literal backticks. */
export function withCode(text) {
  if (typeof text !== "string" || !text.includes("`")) return text;
  return text.split(/`([^`]*)`/).map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

const FINDING_LABELS = {
  swapped_columns: "Swapped columns",
  type_drift: "Type drift",
  null_spike: "Null spike",
  new_columns: "New columns",
  missing_columns: "Missing columns",
};

export function findingsList(findings) {
  if (!findings || !findings.length) return null;
  return h(
    "ul",
    { class: "findings" },
    findings.map((f) =>
      h(
        "li",
        { class: `finding ${f.severity || ""}` },
        h("strong", {}, FINDING_LABELS[f.kind] || (f.kind || "finding").replace(/_/g, " ")),
        " ",
        withCode(f.message || plain(f)),
        evidence(f.evidence),
      ),
    ),
  );
}

function evidence(value) {
  if (!value || (Array.isArray(value) && !value.length)) return null;
  if (Array.isArray(value)) return h("ul", { class: "evidence" }, value.map((e) => h("li", {}, plain(e))));
  return h("p", { class: "evidence" }, plain(value));
}

function byKind(counts) {
  return Object.entries(counts || {})
    .map(([kind, n]) => `${kind}: ${count(n)}`)
    .join(", ");
}

/** A long list folded away: the counts stay in sight, the rows one click away. */
function folded(label, content) {
  return h("details", { class: "folded" }, h("summary", {}, label), content);
}

function listing(title, block, columns) {
  if (!block || !block.count) return h("section", {}, h("h3", {}, title), h("p", {}, "None."));
  const shown = block.first || [];
  const label = shown.length < block.count ? `Show the first ${count(shown.length)}` : `Show all ${count(shown.length)}`;
  return h(
    "section",
    {},
    h("h3", {}, `${title}: ${count(block.count)}`),
    h("p", {}, byKind(block.by_kind)),
    folded(label, table(shown, columns)),
  );
}

/** The teams dry run: a slid column first, then the counts, warnings, errors and a preview. */
export function teamsReport(r) {
  const shift = r.shift || {};
  const alert = shift.suspected
    ? h(
        "div",
        { class: "alert danger", role: "alert" },
        h("h3", {}, "Shift warning"),
        h("p", {}, shift.message),
        (shift.evidence || []).every((e) => (shift.message || "").includes(e)) ? null : evidence(shift.evidence),
        h("p", {}, "Nothing has been written. Fix the sheet before starting the job."),
      )
    : h("div", { class: "alert ok" }, h("p", {}, "No shifted column found."));
  const create = r.would_create || {};
  const change = r.would_change || {};
  const preview = (r.preview || []).map((p) => ({
    line: p.line,
    team: p.team || "",
    manager: p.manager ? `${p.manager.name} ${p.manager.phone}` : "",
    members: p.members ?? "",
    note: p.error ? `${p.error.kind}: ${p.error.message}` : p.phone_owner ? `phone belongs to ${p.phone_owner}` : "",
  }));
  return h(
    "div",
    { class: "report" },
    h("h2", { tabindex: "-1" }, "Dry run: nothing was written"),
    alert,
    h(
      "dl",
      { class: "params" },
      h("dt", {}, "Rows"),
      h("dd", {}, `${count(r.rows)} (${count(r.valid_rows)} valid)`),
      h("dt", {}, "Would create"),
      h("dd", {}, `${count(create.teams || 0)} teams, ${count(create.users || 0)} users`),
      h("dt", {}, "Would change"),
      h("dd", {}, `${count(change.users || 0)} existing users`),
      h("dt", {}, "Cross-row checks"),
      h("dd", {}, plain(r.cross_row_checks)),
    ),
    listing("Warnings", r.warnings, [
      ["line", "Line"],
      ["kind", "Kind"],
      ["message", "Message"],
    ]),
    listing("Row errors", r.errors, [
      ["line", "Line"],
      ["kind", "Kind"],
      ["message", "Message"],
    ]),
    h(
      "section",
      {},
      h("h3", {}, "Preview"),
      folded(
        `Show the first ${count(preview.length)} rows as they would be created`,
        table(preview, [["line", "Line"], ["team", "Team"], ["manager", "Manager"], ["members", "Members"], ["note", "Note"]]),
      ),
    ),
  );
}

/** Any other value of a report, readable without knowing its shape. */
function generic(value) {
  if (Array.isArray(value)) {
    if (value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
      return table(value, keys.map((k) => [k, k]));
    }
    return h("p", {}, plain(value));
  }
  if (value && typeof value === "object") {
    return h(
      "dl",
      { class: "params" },
      Object.entries(value).map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" && v ? generic(v) : plain(v))]),
    );
  }
  return h("p", {}, plain(value));
}

function shares(profile) {
  return Object.entries((profile && profile.shares) || {})
    .sort((a, b) => b[1] - a[1])
    .map(([kind, share]) => `${kind} ${Math.round(share * 100)}%`)
    .join(", ");
}

const HEADER_STATUS = {
  same: "the same columns as the dataset's latest import",
  reordered: "the dataset's columns, in another order",
  changed: "different columns from the dataset's latest import",
  new_dataset: "a new dataset",
};

/** The import dry run: findings first, then the header, the columns' profiles and row errors. */
export function importReport(r) {
  const findings = r.findings || [];
  const header = r.header || {};
  const known = new Set(["dry_run", "dataset", "rows", "valid_rows", "errors", "findings", "header", "columns", "earlier_imports", "types", "types_auto"]);
  const rest = Object.entries(r).filter(([k]) => !known.has(k));
  const columns = (r.columns || []).map((c) => ({
    name: c.name,
    type: c.type,
    inferred: c.inferred_type,
    values: shares(c.profile),
    sample: ((c.profile && c.profile.sample) || []).join(" | "),
  }));
  const typeNote = r.types_auto || (r.types && r.types.auto) ? " (types chosen from the file's values)" : "";
  return h(
    "div",
    { class: "report" },
    h("h2", { tabindex: "-1" }, "Dry run: nothing was written"),
    findings.length
      ? h(
          "div",
          { class: "alert danger", role: "alert" },
          h("h3", {}, `${findings.length} finding${findings.length > 1 ? "s" : ""}: check the file before starting`),
          findingsList(findings.map((f) => ({ ...f, evidence: null }))),
          folded("Evidence", generic(findings.map((f) => ({ kind: f.kind, columns: plain(f.columns), evidence: plain(f.evidence) })))),
        )
      : h("div", { class: "alert ok" }, h("p", {}, "No findings: nothing looks different from the dataset's earlier imports.")),
    h(
      "dl",
      { class: "params" },
      h("dt", {}, "Rows"),
      h("dd", {}, `${count(r.rows)} (${count(r.valid_rows)} valid)`),
      h("dt", {}, "Header"),
      h("dd", {}, [HEADER_STATUS[header.status] || plain(header.status), header.added && header.added.length ? `; added: ${header.added.join(", ")}` : "", header.missing && header.missing.length ? `; missing: ${header.missing.join(", ")}` : ""].join("")),
      h("dt", {}, "Earlier imports compared"),
      h("dd", {}, count(r.earlier_imports || 0)),
    ),
    columns.length
      ? h(
          "section",
          {},
          h("h3", {}, `Columns${typeNote}`),
          table(columns, [["name", "Column"], ["type", "Type"], ["inferred", "Values look like"], ["values", "Kinds of value"], ["sample", "Sample"]]),
        )
      : null,
    listing("Row errors", r.errors, [
      ["line", "Line"],
      ["kind", "Kind"],
      ["message", "Message"],
    ]),
    rest.map(([key, value]) => h("section", {}, h("h3", {}, key.replace(/_/g, " ")), generic(value))),
  );
}
