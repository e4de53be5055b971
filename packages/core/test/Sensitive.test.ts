import { describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import { Schema } from "effect"
import { Log, Sensitive } from "@baton/core"

/** A card number: 12 to 19 digits. */
const card = fc.integer({ min: 12, max: 19 }).chain((n) => fc.stringMatching(new RegExp(`^[0-9]{${n}}$`)))
/** As a person might write it: plain, in groups of four with spaces or dashes. */
const written = fc.tuple(card, fc.constantFrom("", " ", "-")).map(([c, sep]) => ({ card: c, text: sep === "" ? c : (c.match(/.{1,4}/g) ?? []).join(sep) }))
/** Text around it that is not itself part of a digit run. */
const around = fc.string({ maxLength: 30 }).map((s) => s.replace(/[0-9]/g, "x"))

/** Every run of 12 or more digits (spaces and dashes between them allowed), UUIDs taken out first. */
const digitRuns = (s: string): ReadonlyArray<string> =>
  (s.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, "<uuid>").match(/[0-9](?:[ -]?[0-9]){11,}/g) ?? []).map((m) => m.replace(/[ -]/g, ""))

describe("Sensitive", () => {
  it("masks any card number in free text to its last four digits, and leaves the text around it", () => {
    fc.assert(
      fc.property(around, written, around, (before, c, after) => {
        const masked = Sensitive.text(`${before} ${c.text} ${after}`)
        expect(masked).toBe(`${before} ****${c.card.slice(-4)} ${after}`)
        expect(digitRuns(masked)).toEqual([])
        expect(Sensitive.text(masked)).toBe(masked)
      })
    )
  })

  it("leaves UUIDs and shorter numbers alone, even a UUID whose groups are all digits", () => {
    fc.assert(
      fc.property(fc.uuid(), fc.integer({ min: 0, max: 99_999_999_999 }), (id, n) => {
        const s = `id=${id} n=${n} at=2026-11-26T00:10:12.240Z order ORD-000001`
        expect(Sensitive.text(s)).toBe(s)
      })
    )
    expect(Sensitive.text("12345678-1234-1234-1234-123456789012")).toBe("12345678-1234-1234-1234-123456789012")
  })

  it("leaves W3C traceparents alone, even one whose span id ends in ten digits or more, and still masks a card beside one", () => {
    const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`))
    // A span id of 6 hex digits then 10 decimal ones: with the flags' `01` a run of 12 digits.
    const traceparent = fc
      .tuple(hex(32), hex(6), fc.stringMatching(/^[0-9]{10}$/), fc.constantFrom("00", "01"))
      .map(([trace, head, digits, flags]) => `00-${trace}-${head}${digits}-${flags}`)
    fc.assert(
      fc.property(traceparent, written, (tp, c) => {
        expect(Sensitive.text(tp)).toBe(tp)
        expect(Sensitive.text(`{"traceparent":"${tp}"}`)).toBe(`{"traceparent":"${tp}"}`)
        expect(Sensitive.text(`${tp} card ${c.text}`)).toBe(`${tp} card ****${c.card.slice(-4)}`)
      })
    )
    expect(Sensitive.text("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
  })

  it("for any text: text() is the full masking replace (its quick test for a run of 12 digits skips only texts the replace leaves as they are)", () => {
    // The masking replace as it is, run on every text: the reference text() must agree with.
    const cardOrUuid = /((?<![0-9a-f])[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?![0-9a-f])|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|(?<![0-9])[0-9](?:[ -]?[0-9]){11,}/gi
    const full = (s: string) => s.replace(cardOrUuid, (m, uuid: string | undefined) => (uuid !== undefined ? m : `****${m.replace(/[ -]/g, "").slice(-4)}`))
    const piece = fc.oneof(
      fc.stringMatching(/^[0-9a-fA-F -]{0,24}$/),
      fc.uuid(),
      written.map((w) => w.text),
      fc.string({ maxLength: 12 })
    )
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), (pieces) => {
        const s = pieces.join("")
        expect(Sensitive.text(s)).toBe(full(s))
      }),
      { numRuns: 3000 }
    )
    // Whole texts of an id's shape (a UUID, a traceparent), their digits mostly decimal, of either
    // case, some with a character changed, inserted or cut: those `text` keeps without the replace.
    const digitish = (n: number) => fc.array(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(..."0123456789") }, fc.constantFrom(..."abcdefABCDEFgG-: `@/")), { minLength: n, maxLength: n }).map((cs) => cs.join(""))
    const shaped = fc.oneof(
      fc.tuple(digitish(8), digitish(4), digitish(4), digitish(4), digitish(12)).map((g) => g.join("-")),
      fc.tuple(digitish(2), digitish(32), digitish(16), digitish(2)).map((g) => g.join("-"))
    )
    const edited = fc.tuple(shaped, fc.nat(56), fc.constantFrom("replace", "insert", "cut"), fc.constantFrom(..."09aF- x`@G/")).map(([t, at, how, c]) =>
      how === "replace" ? t.slice(0, at) + c + t.slice(at + 1) : how === "insert" ? t.slice(0, at) + c + t.slice(at) : t.slice(0, at) + t.slice(at + 1)
    )
    fc.assert(
      fc.property(fc.oneof(shaped, edited, fc.uuid().map((u) => u.toUpperCase())), (s) => {
        expect(Sensitive.text(s)).toBe(full(s))
      }),
      { numRuns: 5000 }
    )
  })

  it("finds the fields marked sensitive in a schema, nested in structs, arrays and unions", () => {
    const S = Schema.Struct({
      name: Schema.String,
      card: Schema.String.check(Schema.isMinLength(12)).annotate(Sensitive.annotation),
      cards: Schema.Array(Schema.Struct({ pan: Schema.String.annotate(Sensitive.annotation), label: Schema.String })),
      contact: Schema.Union([Schema.Struct({ phone: Schema.optionalKey(Schema.String.annotate(Sensitive.annotation)) }), Schema.Null])
    })
    expect([...Sensitive.fields(S)].sort()).toEqual(["card", "pan", "phone"])
  })

  it("masks the sensitive fields of a value wherever they are, and card numbers in every string", () => {
    const m = Sensitive.masker(["card", "cvv"])
    fc.assert(
      fc.property(written, card, fc.string({ maxLength: 3 }), (c, other, cvv) => {
        const v = { id: "e-1", data: { payment: { card: c.text, cvv }, items: [{ note: `call me on ${other}` }], qty: 2 } }
        const masked = m.json(v)
        expect(masked).toEqual({ id: "e-1", data: { payment: { card: `****${c.card.slice(-4)}`, cvv: "****" }, items: [{ note: `call me on ****${other.slice(-4)}` }], qty: 2 } })
        expect(v.data.payment.card).toBe(c.text)
      })
    )
  })

  it("masks a payload whether it is JSON, malformed JSON or not UTF-8, keeping everything else byte for byte", () => {
    const m = Sensitive.masker(["cvv"])
    fc.assert(
      fc.property(written, fc.stringMatching(/^[a-z0-9]{3,4}$/), fc.uint8Array({ maxLength: 20 }), (c, cvv, noise) => {
        const json = Buffer.from(JSON.stringify({ payment: { card: c.text, cvv } }))
        expect(JSON.parse(m.payload(json).toString())).toEqual({ payment: { card: `****${c.card.slice(-4)}`, cvv: "****" } })
        const malformed = Buffer.from(`{"payment": {"cvv": "${cvv}", "card": "${c.text}"`)
        expect(m.payload(malformed).toString()).toBe(`{"payment": {"cvv": "****", "card": "****${c.card.slice(-4)}"`)
        // Bytes that are not UTF-8 stay as they were around the masked number.
        const bytes = Buffer.concat([Buffer.from([0xff, 0xc3]), Buffer.from(` ${c.text} `), Buffer.from(noise.map((b) => (b >= 0x30 && b <= 0x39 ? 0x78 : b)))])
        const out = m.payload(bytes)
        expect(out.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xc3]))
        expect(out.toString("latin1")).toContain(` ****${c.card.slice(-4)} `)
        expect(digitRuns(out.toString("latin1"))).toEqual([])
      })
    )
  })

  it("for any JSON value: json() is JSON that parses, no card whole in a string, a key or a number written in digits, fractions and exponents kept", () => {
    const cardsIn = (v: unknown): ReadonlyArray<string> =>
      typeof v === "string"
        ? digitRuns(v)
        : typeof v === "number"
          ? /^-?[0-9]+$/.test(String(v)) ? digitRuns(String(v)) : []
          : v !== null && typeof v === "object"
            ? Object.entries(v).flatMap(([k, y]) => [...digitRuns(k), ...cardsIn(y)])
            : []
    fc.assert(
      fc.property(fc.jsonValue(), fc.double({ noNaN: true, noDefaultInfinity: true }), written, (value, n, c) => {
        const back = JSON.parse(Sensitive.json({ value, n, ts: 1764495312000, [c.text]: c.text, card: Number(c.card) })) as Record<string, unknown>
        expect(back.ts).toBe("****2000")
        if (!/^-?[0-9]+$/.test(String(n))) expect(back.n).toBe(n)
        expect(cardsIn(back)).toEqual([])
      }),
      { numRuns: 200 }
    )
  })

  it("for any value, whatever its keys (__proto__ among them): json() builds the object Object.fromEntries would, own properties only", () => {
    const masker = Sensitive.masker(["card"])
    // The masking as it was written first (a pair array per field): what the loop must build.
    const reference = (v: unknown): unknown => {
      if (typeof v === "string") return Sensitive.text(v)
      if (typeof v !== "object" || v === null) return v
      if (Array.isArray(v)) return v.map(reference)
      return Object.fromEntries(Object.entries(v).map(([k, x]) => (k === "card" ? [k, Sensitive.value(x)] : [Sensitive.text(k), reference(x)])))
    }
    const key = fc.oneof(fc.constantFrom("__proto__", "card", "constructor", "toString", "4242424242424242", "a", "b"), fc.string({ maxLength: 14 }))
    const leaf = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant("4000 0000 0000 0002"), fc.boolean(), fc.constant(null))
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: "small" }, leaf, fc.array(tie("v"), { maxLength: 3 }), fc.array(fc.tuple(key, tie("v")), { maxLength: 5 }).map((pairs) => JSON.parse(`{${pairs.map(([k, x]) => `${JSON.stringify(k)}:${JSON.stringify(x)}`).join(",")}}`) as unknown))
    })).v
    const plain = (v: unknown): boolean =>
      typeof v !== "object" || v === null || (Array.isArray(v) ? v.every(plain) : Object.getPrototypeOf(v) === Object.prototype && Object.values(v).every(plain))
    fc.assert(
      fc.property(value, (v) => {
        const masked = masker.json(v)
        expect(JSON.stringify(masked)).toBe(JSON.stringify(reference(v)))
        expect(plain(masked)).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })

  it("masks hostile nesting as text instead of overflowing the stack", () => {
    const m = Sensitive.masker(["card"])
    const deep = (card: string, depth = 20_000) => `${"[".repeat(depth)}{"card":"${card}"}${"]".repeat(depth)}`
    expect(m.payload(Buffer.from(deep("4000000000000002"))).toString()).toBe(deep("****0002"))
    expect(JSON.stringify(m.json(JSON.parse(deep("12345", 1000))))).toBe(deep("****", 1000))
  })

  it("masks card numbers in error reasons and in every field of a masked logger's lines", () => {
    expect(Log.reason(new Error("cannot charge 4000 0000 0000 0002"))).toBe("cannot charge ****0002")
    const lines = Log.memory()
    Log.masked(lines).log("warn", "message rejected", { reason: "bad card 4000000000000002", attempts: 3 })
    expect(lines.lines[0]).toMatch(/message rejected reason="bad card \*\*\*\*0002" attempts=3$/)
  })
})

describe("masking text", () => {
  it("for any JSON value with cards and sensitive fields: text() masks a string as payload() masks its bytes, and leaves no card whole", () => {
    const masker = Sensitive.masker(["card", "cvv"])
    const card = fc.constantFrom("4242424242424242", "4000 0000 0000 0002", "5555-5555-5555-4444")
    const leaf = fc.oneof(fc.string(), fc.integer(), card, fc.boolean())
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: "small" }, leaf, fc.array(tie("v"), { maxLength: 3 }), fc.dictionary(fc.constantFrom("card", "cvv", "name", "data", "note"), tie("v"), { maxKeys: 4 }))
    })).v
    fc.assert(
      fc.property(value, (v) => {
        const s = JSON.stringify(v)
        const masked = masker.text(s)
        expect(masked).toBe(masker.payload(Buffer.from(s)).toString("utf8"))
        for (const c of ["4242424242424242", "4000000000000002", "5555555555554444"]) expect(masked.replace(/[ -]/g, "")).not.toContain(c)
      })
    )
  })

  it("for any value and its JSON text: kept() is what mentions() and text() make of the text, read from the value where it is plain JSON (property)", () => {
    const masker = Sensitive.masker(["card", "cvv"])
    const card = fc.constantFrom("4242424242424242", "4000 0000 0000 0002", "5555-5555-5555-4444", 4242424242424242, -0, 1e21)
    class Money {
      readonly amount: number
      constructor(amount: number) {
        this.amount = amount
      }
    }
    // What JSON.parse would not give back as it is: each must be read from the text.
    const odd = fc.oneof(
      fc.constantFrom(undefined, NaN, Infinity, -Infinity, () => 1, Symbol("s")),
      fc.date({ noInvalidDate: false }),
      fc.integer().map((n) => new Money(n)),
      card.map((c) => ({ toJSON: () => ({ card: c, note: `card ${String(c)}` }) })),
      fc.string().map((x) => Object.assign([x], { toJSON: () => x }))
    )
    const key = fc.oneof(fc.constantFrom("card", "cvv", "name", "__proto__", "toJSON", "1", "01", 'x"card', "4242424242424242", "****4242", "note 4000-0000-0000-0002"), fc.string())
    const value = fc.anything({
      key,
      values: [fc.string(), fc.double(), fc.integer(), card, fc.boolean(), fc.constant(null), odd],
      maxDepth: 4,
      withBoxedValues: true,
      withNullPrototype: true,
      withSparseArray: true,
      withDate: true,
      withMap: true,
      withObjectString: true
    })
    const deep = (n: number, inner: unknown): unknown => (n === 0 ? inner : n % 2 === 0 ? [deep(n - 1, inner)] : { card: "4242424242424242", a: deep(n - 1, inner) })
    const same = (v: unknown) => {
      const s = JSON.stringify(v) as string | undefined
      if (typeof s !== "string") return
      expect(masker.kept(v, s)).toBe(masker.mentions(s) ? masker.text(s) : undefined)
    }
    fc.assert(fc.property(value, same), { numRuns: 2000 })
    fc.assert(fc.property(fc.record({ id: fc.uuid(), data: fc.record({ payment: fc.record({ card: fc.oneof(card, odd, value) }), items: fc.array(value, { maxLength: 3 }) }) }), same))
    // A plain envelope is masked from the value: its text is not parsed.
    const envelope = { id: "01a23278-2eb9-7324-9bac-2892a1b9c2e6", type: "place-order", key: "k", data: { items: [{ sku: "BOOK-1", qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } } }
    const parse = vi.spyOn(JSON, "parse")
    try {
      expect(masker.kept(envelope, JSON.stringify(envelope))).toBe(masker.text(JSON.stringify(envelope)))
      parse.mockClear()
      masker.kept(envelope, JSON.stringify(envelope))
      expect(parse).not.toHaveBeenCalled()
    } finally {
      parse.mockRestore()
    }
    // Keys that mask to the same key, one of them left out of the text (undefined, a function).
    const colliding = fc.dictionary(fc.constantFrom("4242424242424242", "****4242", "4242-4242-4242-4242", "card"), fc.oneof(fc.string(), fc.constantFrom(undefined, () => 1)), { minKeys: 2 })
    fc.assert(fc.property(colliding, same))
    // A value parsed from any JSON text (spaces, escapes such as "\u0063ard", which mentions() does not read as the name).
    fc.assert(
      fc.property(fc.json(), fc.constantFrom("card", "\\u0063ard", "cvv"), fc.constantFrom("", " ", "\n  "), card, (json, name, space, c) => {
        const s = `{${space}"${name}"${space}:${space}${JSON.stringify(c)},${space}"v":${space}${json}${space}}`
        expect(masker.kept(JSON.parse(s), s)).toBe(masker.mentions(s) ? masker.text(s) : undefined)
      })
    )
    fc.assert(fc.property(fc.integer({ min: 60, max: 70 }), fc.oneof(card, fc.string()), (n, inner) => same(deep(n, { card: inner }))))
  })
})
