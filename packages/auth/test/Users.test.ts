import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Acl, Users } from "@baton/auth"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 25

const name = fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/)
const roles = fc.subarray([...Acl.allRoles], { minLength: 1 })
/** A user record without the cost of scrypt: tokens do not depend on the password hash. */
const user = (r: ReadonlyArray<Acl.Role>): Users.User => ({ salt: "c2FsdA==", hash: "aGFzaA==", roles: r })

describe("Users: HTTP tokens", () => {
  it("for any users and tokens: a token names its user and roles; a changed secret, an unknown id, or a removed token or user does not", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.tuple(name, roles), { selector: ([n]) => n, minLength: 1, maxLength: 5 }), fc.nat(), fc.nat(), async (people, pick, flip) => {
        let file: Users.File = { users: Object.fromEntries(people.map(([n, r]) => [n, user(r)])), tokens: {} }
        const issued: Array<{ readonly token: string; readonly user: string; readonly roles: ReadonlyArray<Acl.Role> }> = []
        for (const [n, r] of people) {
          const added = Users.addToken(file, n)
          file = added.file
          issued.push({ token: added.token, user: n, roles: r })
        }
        for (const t of issued) expect(await Users.checkToken(file, t.token)).toEqual({ user: t.user, roles: t.roles })
        const t = issued[pick % issued.length]!
        const [id, secret] = t.token.split(".") as [string, string]
        // 24 random bytes: 192 bits, 32 base64url characters; only its SHA-256 is in the file.
        expect(secret).toMatch(/^[A-Za-z0-9_-]{32}$/)
        expect(JSON.stringify(file)).not.toContain(secret)
        const i = flip % secret.length
        const changed = `${secret.slice(0, i)}${secret[i] === "A" ? "B" : "A"}${secret.slice(i + 1)}`
        expect(await Users.checkToken(file, `${id}.${changed}`)).toBeUndefined()
        expect(await Users.checkToken(file, `${id}x.${secret}`)).toBeUndefined()
        expect(await Users.checkToken(file, secret)).toBeUndefined()
        expect(await Users.checkToken(Users.removeToken(file, id), t.token)).toBeUndefined()
        const { [t.user]: _, ...others } = file.users
        expect(await Users.checkToken({ ...file, users: others }, t.token)).toBeUndefined()
      }),
      { numRuns: runs }
    )
  })

  it("verifies a token of an older file (scrypt) and a new one (SHA-256) alike, and lists the older ones", async () => {
    const secret = "older-secret"
    const file: Users.File = { users: { ann: user(["observer"]) }, tokens: { old: { user: "ann", ...(await Users.hash(secret)) } } }
    expect(Users.scryptTokens(file)).toEqual(["old"])
    expect(await Users.checkToken(file, `old.${secret}`)).toEqual({ user: "ann", roles: ["observer"] })
    // Remembered once verified: a second check is a SHA-256, and a wrong secret is still wrong.
    expect(await Users.checkToken(file, `old.${secret}`)).toEqual({ user: "ann", roles: ["observer"] })
    expect(await Users.checkToken(file, "old.other")).toBeUndefined()
    expect(Users.scryptTokens(Users.addToken(file, "ann").file)).toEqual(["old"])
  })

  it("refuses a users file whose tokens it cannot read, saying how to fix it", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-users-"))
    try {
      const path = join(dir, "users.json")
      writeFileSync(path, JSON.stringify({ users: {}, tokens: { t1: { user: "ann" } } }))
      expect(() => Users.load(path)).toThrow(/token t1 is neither .*'pnpm baton token remove t1'/)
      writeFileSync(path, JSON.stringify({ users: { ann: user(["admin" as Acl.Role]) } }))
      expect(() => Users.load(path)).toThrow(/user ann has unknown roles/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("Acl: HTTP access", () => {
  it("operators alone operate; observers, operators and services read; clients and services submit", () => {
    const table = Object.fromEntries(Acl.allRoles.map((r) => [r, (["read", "operate", "submit"] as const).filter((a) => Acl.mayHttp([r], a))]))
    expect(table).toEqual({ client: ["submit"], observer: ["read"], operator: ["read", "operate"], service: ["read", "submit"] })
    expect(Acl.mayHttp([], "read")).toBe(false)
  })
})
