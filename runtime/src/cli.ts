/**
 * `pnpm baton <command>`: administration of the users file (BATON_AUTH_FILE, or --file).
 *
 *   pnpm baton user add <name> [--role client|observer|operator|service]...   password from BATON_PASSWORD or stdin
 *   pnpm baton user remove <name>
 *   pnpm baton user list
 *   pnpm baton token add <user>                                                prints a new HTTP bearer token once
 *   pnpm baton token list
 *   pnpm baton token remove <id>
 *
 * A running runtime picks the changes up by itself (it watches the file).
 */
import { Acl, Users } from "@baton/auth"

const usage = `usage:
  pnpm baton user add <name> [--role client|observer|operator|service]... [--file users.json]
  pnpm baton user remove <name> [--file users.json]
  pnpm baton user list [--file users.json]
  pnpm baton token add <user> [--file users.json]
  pnpm baton token list [--file users.json]
  pnpm baton token remove <id> [--file users.json]
The password comes from BATON_PASSWORD, or the first line of standard input.
The file is --file, or BATON_AUTH_FILE.`

const fail = (message: string): never => {
  process.stderr.write(`${message}\n`)
  process.exit(2)
}

const args = process.argv.slice(2)
const option = (name: string): Array<string> => args.flatMap((a, i) => (a === name && args[i + 1] !== undefined ? [args[i + 1]!] : []))
const positional = args.filter((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"))
const file = option("--file")[0] ?? process.env.BATON_AUTH_FILE ?? fail(`no users file: pass --file or set BATON_AUTH_FILE\n${usage}`)

const readPassword = async (): Promise<string> => {
  if (process.env.BATON_PASSWORD !== undefined) return process.env.BATON_PASSWORD
  if (process.stdin.isTTY) process.stderr.write("password: ")
  let input = ""
  for await (const chunk of process.stdin) {
    input += String(chunk)
    if (input.includes("\n")) break
  }
  return input.split("\n")[0]!.replace(/\r$/, "")
}

const [noun, verb, name] = positional
if (noun === "user" && verb === "add" && name !== undefined) {
  const roles = option("--role")
  const bad = roles.filter((r) => !Acl.isRole(r))
  if (bad.length > 0) fail(`unknown role ${bad.join(", ")}: roles are ${Acl.allRoles.join(", ")}`)
  const password = await readPassword()
  if (password.length < 8) fail("the password must hold at least 8 characters")
  Users.save(file, await Users.addUser(Users.loadOrEmpty(file), name, password, roles.length === 0 ? ["client"] : (roles as Array<Acl.Role>)))
  process.stdout.write(`user ${name} saved in ${file} with roles ${roles.length === 0 ? "client" : roles.join(",")}\n`)
} else if (noun === "user" && verb === "remove" && name !== undefined) {
  const current = Users.loadOrEmpty(file)
  if (current.users[name] === undefined) fail(`no user ${name} in ${file}`)
  const { [name]: _, ...users } = current.users
  const tokens = Object.fromEntries(Object.entries(current.tokens).filter(([, t]) => t.user !== name))
  Users.save(file, { users, tokens })
  process.stdout.write(`user ${name} removed from ${file}\n`)
} else if (noun === "user" && verb === "list") {
  for (const [n, u] of Object.entries(Users.loadOrEmpty(file).users)) process.stdout.write(`${n} ${u.roles.join(",")}\n`)
} else if (noun === "token" && verb === "add" && name !== undefined) {
  const current = Users.loadOrEmpty(file)
  if (current.users[name] === undefined) fail(`no user ${name} in ${file}: add the user first`)
  const { file: next, token } = Users.addToken(current, name)
  Users.save(file, next)
  process.stdout.write(`${token}\n`)
} else if (noun === "token" && verb === "list") {
  // The id is the part of a token before the dot; older scrypt-hashed tokens are marked for replacement.
  const current = Users.loadOrEmpty(file)
  const old = new Set(Users.scryptTokens(current))
  for (const [id, t] of Object.entries(current.tokens)) process.stdout.write(`${id} ${t.user}${old.has(id) ? " scrypt (replace it: token add, then token remove)" : ""}\n`)
} else if (noun === "token" && verb === "remove" && name !== undefined) {
  const current = Users.loadOrEmpty(file)
  if (current.tokens[name] === undefined) fail(`no token ${name} in ${file} (the id is the part of the token before the dot; see 'pnpm baton token list')`)
  Users.save(file, Users.removeToken(current, name))
  process.stdout.write(`token ${name} removed from ${file}\n`)
} else fail(usage)
