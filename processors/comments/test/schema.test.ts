// @ts-nocheck
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { decode as decoder } from "@baton/sdk"
import { PostCommentData } from "@baton/comments"

const decode = decoder(PostCommentData)
const pathsOf = (input: unknown) => Result.match(decode(input), { onSuccess: () => [], onFailure: (issues) => [...new Set(issues.map((i) => i.path))].sort() })
const valid = { author: "ann", email: "ann@example.com", text: "Nice." }
const part = fc.stringMatching(/^[a-z0-9]{1,12}$/)

describe("comments: the post-comment schema", () => {
  it("for any author of 1-64 characters, an address and a text of 1-4000 characters: accepted as given", () => {
    fc.assert(
      fc.property(
        fc.record({
          author: fc.string({ minLength: 1, maxLength: 64 }),
          email: fc.tuple(part, part, part).map(([a, b, c]) => `${a}@${b}.${c}`),
          text: fc.string({ minLength: 1, maxLength: 4000 })
        }),
        (c) => {
          expect(Result.getOrThrow(decode(c))).toEqual(c)
        }
      )
    )
    expect(pathsOf({ ...valid, author: "a".repeat(64), text: "t".repeat(4000) })).toEqual([])
  })

  it("refuses each broken field at its path, at the length limits too", () => {
    for (const author of ["", "a".repeat(65), 7]) expect(pathsOf({ ...valid, author }), `author ${author}`).toEqual(["author"])
    for (const email of ["nope", "ann@example", "@example.com", "ann@.com", "ann@example.", "a nn@example.com", "ann@example.com and more", "x ann@example.com"])
      expect(pathsOf({ ...valid, email }), email).toEqual(["email"])
    expect(Result.getFailure(decode({ ...valid, email: "nope" }))).toMatchObject({ value: [{ path: "email", message: "must be an e-mail address" }] })
    for (const text of ["", "t".repeat(4001)]) expect(pathsOf({ ...valid, text }), `text of ${text.length}`).toEqual(["text"])
    expect(pathsOf({})).toEqual(["author", "email", "text"])
  })
})
