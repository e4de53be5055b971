import { describe, expect, it } from "vitest"
import { Checks } from "@baton/comments"

describe("comment checks", () => {
  it("refuses profanity as a whole word, in any case", () => {
    expect(Checks.profanity("What the FRAK is this")).toEqual({ ok: false, reason: 'contains the profanity "frak"' })
    expect(Checks.profanity("a fraktal is fine")).toEqual({ ok: true })
  })
  it("refuses a repeated word and a comment without words", () => {
    expect(Checks.grammar("I think the the plot was thin")).toEqual({ ok: false, reason: 'repeats the word "the"' })
    expect(Checks.grammar("!!! ???")).toEqual({ ok: false, reason: "has no words" })
    expect(Checks.grammar("Counting 1 1 2 3 5 8 is fine")).toEqual({ ok: true })
  })
  it("refuses links", () => {
    expect(Checks.context("cheap pills at www.example.com")).toEqual({ ok: false, reason: "links to other sites are not allowed" })
    expect(Checks.context("Great chapter three.")).toEqual({ ok: true })
  })
})
