"""Domain errors. Each subclass's docstring is its default message; the HTTP
layer renders them as application/problem+json (RFC 9457)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """The request could not be served."""

    status = 500
    slug = "internal-error"
    title = "Internal error"
    headers: dict[str, str] = {}  # sent with the problem response; a subclass may set defaults

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.extra = extra
        self.headers = dict(type(self).headers)  # the class's defaults, per instance
        super().__init__(self.detail)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:problem:collect-jobs:{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(ServiceError):
    """The request is not valid."""

    status, slug, title = 400, "bad-request", "Bad request"


class InvalidCsv(BadRequest):
    """The CSV file cannot be imported."""

    slug, title = "invalid-csv", "Invalid CSV"


class Unauthorized(ServiceError):
    """A valid bearer token (a JWT of the identity provider, or an API key) is required."""

    status, slug, title = 401, "unauthorized", "Unauthorized"
    # RFC 6750. The same answer whichever check failed, so a prober learns nothing.
    headers = {"WWW-Authenticate": 'Bearer realm="collect-jobs", error="invalid_token"'}


class Forbidden(ServiceError):
    """Your role does not allow this action."""

    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ServiceError):
    """No such resource."""

    status, slug, title = 404, "not-found", "Not found"


class JobNotFound(NotFound):
    """No job with this id exists in your organisation."""

    slug, title = "job-not-found", "Job not found"


class Gone(ServiceError):
    """The resource existed but was deleted."""

    status, slug, title = 410, "gone", "Gone"


class InvalidTransition(ServiceError):
    """The job is not in a state that allows this action."""

    status, slug, title = 409, "invalid-transition", "Invalid state transition"


class RequestTimeout(ServiceError):
    """The request body stopped arriving (UPLOAD_IDLE_SECONDS without a byte)."""

    status, slug, title = 408, "request-timeout", "Request timeout"


class PayloadTooLarge(ServiceError):
    """The request body is larger than the configured limit."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ServiceError):
    """The request body has a content type this endpoint does not accept."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class TooManyRequests(ServiceError):
    """A limit of your organisation or of this replica is reached; retry later."""

    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str | None = None, retry_after: int = 30, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after)


class Unavailable(ServiceError):
    """The service cannot serve this request right now."""

    status, slug, title = 503, "unavailable", "Service unavailable"


class JobStopped(Exception):
    """Raised inside a job at a checkpoint when it must stop running; never reaches a client."""


class JobTerminated(JobStopped):
    """A user terminated the job: stop and roll back."""


class JobFailed(Exception):
    """The job cannot continue; its message is shown to the user as the job's error.
    ``retryable``: whether POST /jobs/{id}/retry may continue it (an outage can be
    retried; a file whose rows fail cannot)."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
