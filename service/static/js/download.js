// Downloads that the browser itself saves (its download bar, its resume and
// failure reporting), never a file held in the page.

import { api, query } from "./api.js";
import { capabilities } from "./capabilities.js";

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

/**
 * A link the browser can follow without the bearer header: a single-use
 * download ticket (POST /api/v1/downloads) where the service has them, so
 * neither the token nor a GET that starts work ever appears in a URL.
 */
async function ticket(body) {
  const answer = await api("POST", "/api/v1/downloads", { json: body });
  return answer.url;
}

/** The stored CSV of a finished background export. */
export async function downloadResult(job) {
  const caps = await capabilities();
  browserDownload(caps.downloadTickets ? await ticket({ job_id: job.id }) : job.links.result || `${job.links.self}/result`);
}

/**
 * The streamed export: the service starts it as a job the moment the
 * browser asks and streams rows into the download as they are read.
 */
export async function streamExport(spec) {
  const caps = await capabilities();
  if (caps.downloadTickets) {
    browserDownload(await ticket({ export: spec }));
    return;
  }
  const { dataset, fields, ...rest } = spec;
  const params = { ...rest, fields: (fields || []).join(",") };
  if (params.neutralize_formulas === true) delete params.neutralize_formulas;
  browserDownload(`/api/v1/exports/${encodeURIComponent(dataset)}.csv${query(params)}`);
}
