/**
 * The users file (`BATON_AUTH_FILE`): salted scrypt hashes of passwords and HTTP tokens, and each
 * user's roles. Written atomically (temporary file, then rename): never half-written.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto"
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { isRole, type Role } from "./Acl.ts"

export interface Secret {
  readonly salt: string
  readonly hash: string
}

export interface User extends Secret {
  readonly roles: ReadonlyArray<Role>
}

export interface Token extends Secret {
  readonly user: string
}

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

export class UsersFileError extends Error {
  override readonly name = "UsersFileError"
}

export const load = (path: string): File => {
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, "utf8"))
  } catch (error) {
    throw new UsersFileError(`cannot read the users file ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const file = raw as Partial<File>
  if (typeof file !== "object" || file === null || typeof file.users !== "object") throw new UsersFileError(`${path} is not a Baton users file (no "users" object)`)
  for (const [name, user] of Object.entries(file.users ?? {}))
    if (!Array.isArray(user.roles) || !user.roles.every((r) => isRole(r))) throw new UsersFileError(`${path}: user ${name} has unknown roles`)
  return { users: file.users ?? {}, tokens: file.tokens ?? {} }
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

/** Creates an HTTP bearer token `<id>.<secret>` for a user; only its hash is stored. */
export const addToken = async (file: File, user: string): Promise<{ readonly file: File; readonly token: string }> => {
  const id = randomBytes(6).toString("hex")
  const secret = randomBytes(24).toString("base64url")
  return { file: { ...file, tokens: { ...file.tokens, [id]: { ...(await hash(secret)), user } } }, token: `${id}.${secret}` }
}

export const authenticate = async (file: File, name: string, password: string): Promise<ReadonlyArray<Role> | undefined> => {
  const user = file.users[name]
  return user !== undefined && (await verify(password, user)) ? user.roles : undefined
}

export const checkToken = async (file: File, token: string): Promise<string | undefined> => {
  const [id, secret] = token.split(".")
  const stored = id === undefined ? undefined : file.tokens[id]
  return stored !== undefined && secret !== undefined && (await verify(secret, stored)) ? stored.user : undefined
}
