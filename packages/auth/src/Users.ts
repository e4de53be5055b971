/**
 * The users file (`BATON_AUTH_FILE`): salted scrypt hashes of passwords, SHA-256 hashes of HTTP
 * tokens, and each user's roles. Written atomically (temporary file, then rename): never
 * half-written.
 *
 * A token is `<id>.<secret>` with a random 192-bit secret: nothing to guess or look up in a
 * dictionary, so a plain SHA-256 is enough and every request can afford it (scrypt costs tens of
 * milliseconds). Files written before carry scrypt-hashed tokens (`salt`, `hash`): they keep
 * working, verified by scrypt once and then remembered, until they are replaced.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto"
import { existsSync, readFileSync, renameSync, unwatchFile, watchFile, writeFileSync } from "node:fs"
import { isRole, type Role } from "./Acl.ts"

export interface Secret {
  readonly salt: string
  readonly hash: string
}

export interface User extends Secret {
  readonly roles: ReadonlyArray<Role>
}

/** A token's SHA-256 (base64), or (files written before) its scrypt hash. */
export type Token = { readonly user: string; readonly sha256: string } | (Secret & { readonly user: string })

export interface File {
  readonly users: Readonly<Record<string, User>>
  readonly tokens: Readonly<Record<string, Token>>
}

const params = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }

const derive = (secret: string, salt: Buffer): Promise<Buffer> =>
  new Promise((resolve, reject) => scrypt(secret, salt, 32, params, (e, key) => (e ? reject(e) : resolve(key))))

export const hash = async (secret: string): Promise<Secret> => {
  const salt = randomBytes(16)
  return { salt: salt.toString("base64"), hash: (await derive(secret, salt)).toString("base64") }
}

export const verify = async (secret: string, stored: Secret): Promise<boolean> => {
  const expected = Buffer.from(stored.hash, "base64")
  const actual = await derive(secret, Buffer.from(stored.salt, "base64"))
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

const sha256 = (secret: string): Buffer => createHash("sha256").update(secret, "utf8").digest()

const sameDigest = (actual: Buffer, expectedBase64: string): boolean => {
  const expected = Buffer.from(expectedBase64, "base64")
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

export class UsersFileError extends Error {
  override readonly name = "UsersFileError"
}

const isString = (v: unknown): v is string => typeof v === "string" && v !== ""

export const load = (path: string): File => {
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, "utf8"))
  } catch (error) {
    throw new UsersFileError(`cannot read the users file ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const file = raw as Partial<File>
  if (typeof file !== "object" || file === null || typeof file.users !== "object" || file.users === null)
    throw new UsersFileError(`${path} is not a Baton users file (no "users" object)`)
  for (const [name, user] of Object.entries(file.users))
    if (!Array.isArray(user.roles) || !user.roles.every((r) => isRole(r))) throw new UsersFileError(`${path}: user ${name} has unknown roles`)
  for (const [id, token] of Object.entries(file.tokens ?? {})) {
    const t = token as Partial<Record<string, unknown>>
    if (typeof t !== "object" || t === null || !isString(t.user) || !(isString(t.sha256) || (isString(t.salt) && isString(t.hash))))
      throw new UsersFileError(`${path}: token ${id} is neither a SHA-256 token ("user", "sha256") nor an older scrypt one ("user", "salt", "hash"); remove it with 'pnpm baton token remove ${id}' and add a new one with 'pnpm baton token add <user>'`)
  }
  return { users: file.users, tokens: file.tokens ?? {} }
}

export const loadOrEmpty = (path: string): File => (existsSync(path) ? load(path) : { users: {}, tokens: {} })

export const save = (path: string, file: File): void => {
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 })
  renameSync(tmp, path)
}

export const addUser = async (file: File, name: string, password: string, roles: ReadonlyArray<Role>): Promise<File> => ({
  ...file,
  users: { ...file.users, [name]: { ...(await hash(password)), roles } }
})

/** Creates an HTTP bearer token `<id>.<secret>` (a 192-bit secret) for a user; only its SHA-256 is stored. */
export const addToken = (file: File, user: string): { readonly file: File; readonly token: string } => {
  const id = randomBytes(6).toString("hex")
  const secret = randomBytes(24).toString("base64url")
  return { file: { ...file, tokens: { ...file.tokens, [id]: { user, sha256: sha256(secret).toString("base64") } } }, token: `${id}.${secret}` }
}

export const removeToken = (file: File, id: string): File => {
  const { [id]: _, ...tokens } = file.tokens
  return { ...file, tokens }
}

/** The ids of tokens still hashed with scrypt (files written before SHA-256 tokens). */
export const scryptTokens = (file: File): ReadonlyArray<string> => Object.entries(file.tokens).flatMap(([id, t]) => ("sha256" in t ? [] : [id]))

export const authenticate = async (file: File, name: string, password: string): Promise<ReadonlyArray<Role> | undefined> => {
  const user = file.users[name]
  return user !== undefined && (await verify(password, user)) ? user.roles : undefined
}

export interface Principal {
  readonly user: string
  readonly roles: ReadonlyArray<Role>
}

/** Older scrypt tokens, once verified: their secret's SHA-256, so that scrypt runs once per token. */
const verifiedScrypt = new WeakMap<Token, string>()

/** The user of a bearer token and its roles, or undefined (unknown id, wrong secret, or a user removed since). */
export const checkToken = async (file: File, token: string): Promise<Principal | undefined> => {
  const dot = token.indexOf(".")
  if (dot <= 0) return undefined
  const id = token.slice(0, dot)
  const secret = token.slice(dot + 1)
  const stored = Object.hasOwn(file.tokens, id) ? file.tokens[id] : undefined
  if (stored === undefined || secret === "") return undefined
  const digest = sha256(secret)
  let ok: boolean
  if ("sha256" in stored) ok = sameDigest(digest, stored.sha256)
  else {
    const remembered = verifiedScrypt.get(stored)
    ok = remembered !== undefined ? sameDigest(digest, remembered) : await verify(secret, stored)
    if (ok && remembered === undefined) verifiedScrypt.set(stored, digest.toString("base64"))
  }
  const user = Object.hasOwn(file.users, stored.user) ? file.users[stored.user] : undefined
  return ok && user !== undefined ? { user: stored.user, roles: user.roles } : undefined
}

/**
 * Watches the users file and hands over each new version (polling its status, which sees an atomic
 * rename as well as an edit in place). A version that does not load is reported, and the previous
 * one stays in force.
 */
export const watch = (
  path: string,
  options: { readonly intervalMs: number; readonly changed: (file: File) => void; readonly failed: (error: UsersFileError) => void }
): { readonly close: () => void } => {
  const listener = (now: { mtimeMs: number; ino: number; size: number }, before: { mtimeMs: number; ino: number; size: number }) => {
    if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return
    try {
      options.changed(load(path))
    } catch (error) {
      options.failed(error instanceof UsersFileError ? error : new UsersFileError(String(error)))
    }
  }
  watchFile(path, { interval: options.intervalMs, persistent: false }, listener)
  return { close: () => unwatchFile(path, listener) }
}
