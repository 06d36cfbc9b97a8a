// Web client usage example for the generated TypeScript in gen/ts (protoc-gen-es, @bufbuild/protobuf).
//
// A browser talks to Switchboard through Envoy's gRPC-JSON transcoder: plain HTTP/JSON on the paths
// of each method's google.api.http option, `authorization: Bearer <session token>`, and errors as a
// JSON google.rpc.Status whose details carry google.rpc.ErrorInfo / google.rpc.BadRequest.
//
// This file is not bundled or run anywhere: `make ts-check` type-checks it together with gen/ts
// (see gen/ts/tsconfig.json), so a contract or generator change that breaks typed use of the
// generated code fails CI. Copy it as the starting point of a web client.

import { type JsonValue, create, createRegistry, fromJson, getOption, toJson } from "@bufbuild/protobuf";
import { anyUnpack, timestampDate } from "@bufbuild/protobuf/wkt";
import type { DescMethod } from "@bufbuild/protobuf";
import { http } from "../../gen/ts/google/api/annotations_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/ts/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/ts/google/rpc/status_pb.js";
import {
  AuthService,
  DevLoginRequestSchema,
  DevLoginResponseSchema,
  GetMeRequestSchema,
  GetMeResponseSchema,
  type User,
} from "../../gen/ts/switchboard/identity/v1/identity_pb.js";
import { Role } from "../../gen/ts/switchboard/options/v1/access_pb.js";

/** The HTTP verb and path template of a method, from its google.api.http option. */
export function httpRoute(method: DescMethod): { verb: string; path: string; body: string } {
  const rule = getOption(method, http);
  switch (rule.pattern.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      return { verb: rule.pattern.case.toUpperCase(), path: rule.pattern.value, body: rule.body };
    case "custom":
      return { verb: rule.pattern.value.kind, path: rule.pattern.value.path, body: rule.body };
    case undefined:
      throw new Error(`${method.parent.typeName}.${method.name} has no google.api.http option`);
  }
}

/** A failed call, with the google.rpc.Status details the server attached. */
export class SwitchboardError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly reason: string | undefined,
    readonly fieldViolations: { field: string; description: string }[],
    message: string,
  ) {
    super(message);
  }
}

const errorRegistry = createRegistry(ErrorInfoSchema, BadRequestSchema);

async function toError(response: Response): Promise<SwitchboardError> {
  const status = fromJson(StatusSchema, (await response.json()) as JsonValue, {
    registry: errorRegistry,
    ignoreUnknownFields: true,
  });
  let reason: string | undefined;
  const fieldViolations: { field: string; description: string }[] = [];
  for (const detail of status.details) {
    const info = anyUnpack(detail, ErrorInfoSchema);
    if (info !== undefined) {
      reason = info.reason;
    }
    const badRequest = anyUnpack(detail, BadRequestSchema);
    for (const violation of badRequest?.fieldViolations ?? []) {
      fieldViolations.push({ field: violation.field, description: violation.description });
    }
  }
  return new SwitchboardError(response.status, reason, fieldViolations, status.message);
}

/** Dev environment only: log in as a Telegram id, then read the calling user back. */
export async function devLoginAndGetMe(baseUrl: string, telegramUserId: bigint): Promise<User> {
  const login = httpRoute(AuthService.method.devLogin);
  const request = create(DevLoginRequestSchema, { telegramUserId, displayName: "Web Example" });
  const loginResponse = await fetch(baseUrl + login.path, {
    method: login.verb,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(toJson(DevLoginRequestSchema, request)),
  });
  if (!loginResponse.ok) {
    throw await toError(loginResponse);
  }
  const { session } = fromJson(DevLoginResponseSchema, (await loginResponse.json()) as JsonValue, {
    ignoreUnknownFields: true,
  });
  if (session === undefined) {
    throw new Error("DevLogin returned no session");
  }
  if (session.expireTime !== undefined && timestampDate(session.expireTime) < new Date()) {
    throw new Error("DevLogin returned an expired session");
  }

  const getMe = httpRoute(AuthService.method.getMe);
  create(GetMeRequestSchema); // GetMe takes no fields: a GET without a body.
  const meResponse = await fetch(baseUrl + getMe.path, {
    method: getMe.verb,
    headers: { authorization: `Bearer ${session.token}` },
  });
  if (!meResponse.ok) {
    throw await toError(meResponse);
  }
  const { user } = fromJson(GetMeResponseSchema, (await meResponse.json()) as JsonValue, {
    ignoreUnknownFields: true,
  });
  if (user === undefined) {
    throw new Error("GetMe returned no user");
  }
  return user;
}

/** Enums keep their names without the prefix: ROLE_SUPER_ADMIN is Role.SUPER_ADMIN. */
export function isAdmin(user: User): boolean {
  return user.role === Role.ADMIN || user.role === Role.SUPER_ADMIN;
}
