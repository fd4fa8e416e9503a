// Following a job as it changes: the service's server-sent events
// (GET /api/v1/jobs/{id}/events), reconnecting after a dropped connection.

import { ApiError, events } from "./api.js";

const RETRY_MS = 2000;

/**
 * Calls onJob(job) with every version of the job until it ends (completed,
 * terminated, failed), `signal` aborts, or the job disappears. Resolves then.
 */
export async function follow(jobId, onJob, signal) {
  const path = `/api/v1/jobs/${encodeURIComponent(jobId)}/events`;
  while (!signal.aborted) {
    try {
      for await (const { event, data } of events(path, signal)) {
        if (event === "job") onJob(data);
        else if (event === "end") return;
      }
    } catch (error) {
      if (signal.aborted) return;
      // 404 (deleted) or 401 (signed out, handled by the api module) end it.
      if (error instanceof ApiError && [401, 403, 404].includes(error.status)) return;
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}
