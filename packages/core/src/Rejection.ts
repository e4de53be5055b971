/** Why an incoming message was refused; recorded and published on `errors/<original topic>`. */
import type { Issue } from "./Envelope.ts"

export type RejectionKind =
  | "malformed-json"
  | "schema-violation"
  | "unknown-topic"
  | "oversized-payload"
  | "processing-failed"

export interface Rejection {
  readonly kind: RejectionKind
  readonly topic: string
  readonly reason: string
  readonly issues: ReadonlyArray<Issue>
  /** The original payload as text (UTF-8, or base64 when it is not valid UTF-8), possibly cut. */
  readonly payload: string
  readonly payloadEncoding: "utf8" | "base64"
  readonly payloadBytes: number
  readonly payloadTruncated: boolean
  readonly processor?: string
  readonly attempts?: number
  /** The id of the envelope that failed (processing-failed): what a resubmission replaces. */
  readonly envelopeId?: string
}

/** Rejections publish at most this much of the original payload; the size is always recorded. */
export const payloadPreviewBytes = 64 * 1024

export const describePayload = (
  payload: Buffer
): Pick<Rejection, "payload" | "payloadEncoding" | "payloadBytes" | "payloadTruncated"> => {
  const cut = payload.length > payloadPreviewBytes ? payload.subarray(0, payloadPreviewBytes) : payload
  let text: string | undefined
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(cut)
  } catch {
    text = undefined
  }
  return {
    payload: text ?? cut.toString("base64"),
    payloadEncoding: text === undefined ? "base64" : "utf8",
    payloadBytes: payload.length,
    payloadTruncated: cut.length < payload.length
  }
}
