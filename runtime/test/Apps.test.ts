import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { join, resolve } from "node:path"
import * as Apps from "../src/Apps.ts"

describe("Apps.modulePath", () => {
  it("a reference app's name is its module in processors/; a path is resolved against where the command was run", () => {
    expect(Apps.modulePath("ping", "/elsewhere")).toBe(resolve(import.meta.dirname, "../../processors/ping/src/app.ts"))
    expect(Apps.modulePath("./src/app.ts", "/home/ann/shop")).toBe("/home/ann/shop/src/app.ts")
    expect(Apps.modulePath("/srv/shop/app.ts", "/home/ann")).toBe("/srv/shop/app.ts")
  })

  it("for any relative path: a path entry, under the base", () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-z][a-z0-9-]{0,7}$/), { minLength: 1, maxLength: 4 }), (parts) => {
        const entry = `./${parts.join("/")}.ts`
        expect(Apps.isPath(entry)).toBe(true)
        expect(Apps.modulePath(entry, "/base")).toBe(join("/base", ...parts) + ".ts")
      }),
      { numRuns: 100 }
    )
  })
})
