import { describe, expect, it } from "vitest";

import { createClient } from "../../src/client.js";
import {
  FailedPrecondition,
  InvalidArgument,
  NotFound,
  ParleyError,
  Unavailable,
  errorFromResponseBody,
  errorFromStatus,
} from "../../src/errors.js";

describe("errorFromStatus", () => {
  it("picks the class of the gRPC code and reads field violations and the reason", () => {
    const error = errorFromStatus(
      {
        code: 3,
        message: "invalid room",
        details: [
          {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            fieldViolations: [{ field: "room.slug", description: "does not match the pattern" }],
          },
          { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_SLUG", domain: "parley" },
        ],
      },
      400,
    );
    expect(error).toBeInstanceOf(InvalidArgument);
    expect(error).toBeInstanceOf(ParleyError);
    expect(error.codeName).toBe("INVALID_ARGUMENT");
    expect(error.httpStatus).toBe(400);
    expect(error.message).toBe("invalid room");
    expect(error.reason).toBe("INVALID_SLUG");
    expect(error.fieldViolations).toEqual([{ field: "room.slug", description: "does not match the pattern" }]);
  });

  it("falls back to the HTTP status when a body has no code", () => {
    expect(errorFromStatus({ message: "gone" }, 404)).toBeInstanceOf(NotFound);
    expect(errorFromStatus({}, undefined).code).toBe(2);
  });

  it("reads non-JSON bodies (a proxy's page) by their HTTP status", () => {
    const error = errorFromResponseBody(502, "<html>Bad Gateway</html>");
    expect(error).toBeInstanceOf(Unavailable);
    expect(error.message).toContain("Bad Gateway");
  });

  it("keeps codes the gateway maps to the same HTTP status apart by the body", () => {
    // FAILED_PRECONDITION and INVALID_ARGUMENT both answer 400: the body's code decides.
    const error = errorFromResponseBody(400, JSON.stringify({ code: 9, message: "stale etag", details: [] }));
    expect(error).toBeInstanceOf(FailedPrecondition);
  });
});

describe("createClient", () => {
  const answer = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

  it("sends the bearer token and throws the typed error of a failed call", async () => {
    const seen: Request[] = [];
    const api = createClient({
      baseUrl: "http://gateway.test",
      token: () => "tok-1",
      fetch: async (request) => {
        seen.push(request);
        return answer(404, { code: 5, message: "no room abc", details: [] });
      },
    });
    const call = api.GET("/v1/rooms/{room}", { params: { path: { room: "abc" } } });
    await expect(call).rejects.toBeInstanceOf(NotFound);
    expect(seen[0]?.headers.get("authorization")).toBe("Bearer tok-1");
    expect(seen[0]?.url).toBe("http://gateway.test/v1/rooms/abc");
  });

  it("reports an unreachable gateway as Unavailable", async () => {
    const api = createClient({
      baseUrl: "http://gateway.test",
      fetch: async () => {
        throw new TypeError("fetch failed");
      },
    });
    await expect(api.GET("/v1/rooms/{room}", { params: { path: { room: "abc" } } })).rejects.toBeInstanceOf(
      Unavailable,
    );
  });
});
