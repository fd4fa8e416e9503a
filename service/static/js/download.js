// Downloads that the browser itself saves (its download bar, its resume and
// failure reporting), never a file held in the page.

import { query } from "./api.js";

/** Hands a URL to the browser's download manager. */
export function browserDownload(url) {
  const link = document.createElement("a");
  link.href = url;
  link.download = "";
  link.rel = "noopener";
  document.body.append(link);
  link.click();
  link.remove();
}

/** The stored CSV of a finished background export. */
export function downloadResult(job) {
  browserDownload(job.links.result || `${job.links.self}/result`);
}

/**
 * The streamed export: the service starts it as a job the moment the
 * browser asks and streams rows into the download as they are read.
 */
export async function streamExport(spec) {
  const { dataset, fields, ...rest } = spec;
  const params = { ...rest, fields: (fields || []).join(",") };
  if (params.neutralize_formulas === true) delete params.neutralize_formulas;
  browserDownload(`/api/v1/exports/${encodeURIComponent(dataset)}.csv${query(params)}`);
}
