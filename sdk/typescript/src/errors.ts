/**
 * Errors the SDK throws: one class per gRPC status code, under one root, as the Python SDK.
 *
 * ParleyError                 root: .code, .codeName, .message, .details, .reason, .fieldViolations
 * ├── Cancelled               CANCELLED
 * ├── InvalidArgument         INVALID_ARGUMENT: .fieldViolations names the fields
 * ├── DeadlineExceeded        DEADLINE_EXCEEDED
 * ├── NotFound                NOT_FOUND (or not visible to the caller)
 * ├── AlreadyExists           ALREADY_EXISTS
 * ├── PermissionDenied        PERMISSION_DENIED
 * ├── ResourceExhausted       RESOURCE_EXHAUSTED
 * ├── FailedPrecondition      FAILED_PRECONDITION: .reason says which
 * ├── Aborted                 ABORTED
 * ├── OutOfRange              OUT_OF_RANGE
 * ├── Unimplemented           UNIMPLEMENTED
 * ├── Internal                INTERNAL
 * ├── Unavailable             UNAVAILABLE (also: the gateway could not be reached)
 * ├── DataLoss                DATA_LOSS
 * └── Unauthenticated         UNAUTHENTICATED
 *
 * Both the REST API and the signal socket report failures as a `google.rpc.Status` in the
 * JSON mapping (`{code, message, details: [{"@type": ..., ...}]}`); `errorFromStatus` is the
 * one place that reads it.
 */

/** gRPC status codes by number (google.rpc.Code). */
export const GRPC_CODES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

export type GrpcCodeName = (typeof GRPC_CODES)[number];

/** One invalid field of a request (`google.rpc.BadRequest.FieldViolation`). */
export interface FieldViolation {
  /** The field's path, for example `room.display_name`. */
  field: string;
  /** What is wrong with it. */
  description: string;
}

/** A detail of a `google.rpc.Status`, as the JSON mapping writes an `Any`. */
export interface StatusDetail {
  "@type": string;
  [key: string]: unknown;
}

/** A `google.rpc.Status` in the JSON mapping. */
export interface StatusJson {
  code?: number;
  message?: string;
  details?: StatusDetail[];
}

const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";

/** The root of every error the SDK throws for a failed call or signal request. */
export class ParleyError extends Error {
  /** The gRPC status code (google.rpc.Code), 2 (UNKNOWN) when none was given. */
  readonly code: number;
  /** The HTTP status of a REST call that failed; undefined for signal errors. */
  readonly httpStatus: number | undefined;
  /** The status's typed details (`google.rpc.BadRequest`, `google.rpc.ErrorInfo`...). */
  readonly details: readonly StatusDetail[];

  constructor(message: string, options: { code?: number; details?: StatusDetail[]; httpStatus?: number } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = options.code ?? 2;
    this.details = options.details ?? [];
    this.httpStatus = options.httpStatus;
  }

  /** The code's name, for example `NOT_FOUND`. */
  get codeName(): GrpcCodeName {
    return GRPC_CODES[this.code] ?? "UNKNOWN";
  }

  /** The machine-readable reason of an `ErrorInfo` detail, or `""`. */
  get reason(): string {
    const info = this.details.find((d) => d["@type"] === ERROR_INFO);
    return typeof info?.reason === "string" ? info.reason : "";
  }

  /** The invalid fields named by `BadRequest` details. */
  get fieldViolations(): FieldViolation[] {
    const found: FieldViolation[] = [];
    for (const detail of this.details) {
      if (detail["@type"] !== BAD_REQUEST || !Array.isArray(detail.fieldViolations)) continue;
      for (const v of detail.fieldViolations as Array<Record<string, unknown>>) {
        found.push({ field: String(v.field ?? ""), description: String(v.description ?? "") });
      }
    }
    return found;
  }
}

export class Cancelled extends ParleyError {}
export class InvalidArgument extends ParleyError {}
export class DeadlineExceeded extends ParleyError {}
export class NotFound extends ParleyError {}
export class AlreadyExists extends ParleyError {}
export class PermissionDenied extends ParleyError {}
export class ResourceExhausted extends ParleyError {}
export class FailedPrecondition extends ParleyError {}
export class Aborted extends ParleyError {}
export class OutOfRange extends ParleyError {}
export class Unimplemented extends ParleyError {}
export class Internal extends ParleyError {}
export class Unavailable extends ParleyError {}
export class DataLoss extends ParleyError {}
export class Unauthenticated extends ParleyError {}

const BY_CODE: Record<number, typeof ParleyError> = {
  1: Cancelled,
  3: InvalidArgument,
  4: DeadlineExceeded,
  5: NotFound,
  6: AlreadyExists,
  7: PermissionDenied,
  8: ResourceExhausted,
  9: FailedPrecondition,
  10: Aborted,
  11: OutOfRange,
  12: Unimplemented,
  13: Internal,
  14: Unavailable,
  15: DataLoss,
  16: Unauthenticated,
};

/** The gRPC code an HTTP status stands for, when a body carries none (a proxy's 502...);
 * the inverse of the gateway's mapping, as grpc-gateway's clients read it. */
export function codeOfHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return 3;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 5;
    case 409:
      return 10;
    case 412:
      return 9;
    case 413:
    case 429:
      return 8;
    case 499:
      return 1;
    case 501:
      return 12;
    case 502:
    case 503:
      return 14;
    case 504:
      return 4;
    default:
      return status >= 500 ? 13 : 2;
  }
}

/** The typed error of a `google.rpc.Status` (JSON mapping). */
export function errorFromStatus(status: StatusJson, httpStatus?: number): ParleyError {
  const code = typeof status.code === "number" ? status.code : httpStatus ? codeOfHttpStatus(httpStatus) : 2;
  const Class = BY_CODE[code] ?? ParleyError;
  const details = Array.isArray(status.details) ? status.details : [];
  const message = status.message || GRPC_CODES[code] || "request failed";
  return new Class(message, { code, details, ...(httpStatus === undefined ? {} : { httpStatus }) });
}

/** The typed error of a failed REST response's body (a Status, or whatever a proxy sent). */
export function errorFromResponseBody(httpStatus: number, body: string): ParleyError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
    return errorFromStatus(parsed as StatusJson, httpStatus);
  }
  const text = body.trim().slice(0, 200) || `HTTP ${httpStatus}`;
  return errorFromStatus({ code: codeOfHttpStatus(httpStatus), message: text }, httpStatus);
}
