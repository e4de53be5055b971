/**
 * A schema's parse (decode, or encode through its flipped AST) done without effect's interpreter,
 * for the schemas most events are made of: structs of strings, numbers, booleans, literals, `null`,
 * `Unknown` and arrays of them, with filter checks (`NonEmptyString`, `isInt`, `isPattern`, ...) and
 * optional keys, nothing transformed. The interpreter builds a state object, an exit per value, a
 * result around it (the order flow: ~7% of the runtime's CPU in effect's schema code, 10 KB of
 * each order's 137 KB; with this, 129 KB, `allocation.ts`); this walks the value once and copies
 * what the interpreter copies (every struct and array anew, in the schema's key order, keys it
 * does not declare left out). A value it does not accept, whatever the reason, gives `refused`:
 * the caller then runs the schema's own parse, whose failure (and issues) are the schema's.
 */
import type { SchemaAST } from "effect"

/** What `compile`'s parse gives for a value it does not accept (or cannot tell): run the schema's own. */
export const refused: unique symbol = Symbol("baton.plain-schema.refused")

type Parse = (input: unknown) => unknown

/** The options a check is run with: effect's defaults (a filter only builds its issue from them). */
const checkOptions = Object.freeze({})

/** Whether every check (filters, groups of them) passes on `value` (one that throws: see `attempt`). */
const passes = (checks: ReadonlyArray<SchemaAST.Check<any>>, value: unknown, ast: SchemaAST.AST): boolean => {
  for (const check of checks) {
    if (check._tag === "FilterGroup") {
      if (!passes(check.checks, value, ast)) return false
    } else if (check.run(value, ast, checkOptions) !== undefined) return false
  }
  return true
}

/**
 * `parse` with the node's checks after it, as the interpreter runs them: its encoding checks (a
 * struct's or an array's checks, once flipped for an encode) on the value it is given, then its
 * checks on the value it gives (a struct's copy: without the keys it does not declare).
 */
const checked = (ast: SchemaAST.AST, parse: Parse): Parse => {
  const checks = ast.checks ?? []
  const encodingChecks = ("encodingChecks" in ast ? (ast.encodingChecks as ReadonlyArray<SchemaAST.Check<any>> | undefined) : undefined) ?? []
  if (checks.length === 0 && encodingChecks.length === 0) return parse
  return (input) => {
    const out = parse(input)
    return out !== refused && passes(encodingChecks, input, ast) && passes(checks, out, ast) ? out : refused
  }
}

const isOptional = (ast: SchemaAST.AST): boolean => ast.context?.isOptional ?? false

/**
 * The parse of `ast` without the interpreter, or undefined when the schema has a node it does not
 * know (a union, a transformation, a declaration, an index signature, a tuple's elements...): then
 * the schema's own parse every time. Pass `SchemaAST.flip(ast)` for an encode.
 */
export const compile = (ast: SchemaAST.AST): Parse | undefined => {
  if (ast.encoding !== undefined) return undefined
  switch (ast._tag) {
    case "String":
      return checked(ast, (input) => (typeof input === "string" ? input : refused))
    case "Number":
      return checked(ast, (input) => (typeof input === "number" ? input : refused))
    case "Boolean":
      return checked(ast, (input) => (typeof input === "boolean" ? input : refused))
    case "Null":
      return checked(ast, (input) => (input === null ? input : refused))
    case "Unknown":
    case "Any":
      return checked(ast, (input) => input)
    case "Literal": {
      const literal = (ast as SchemaAST.Literal).literal
      if (typeof literal === "bigint") return undefined
      // The input as it is (the schema's too): `-0 === 0`, and a literal 0 (or -0) gives the input's zero.
      return checked(ast, (input) => (input === literal ? input : refused))
    }
    case "Arrays": {
      const arrays = ast as SchemaAST.Arrays
      if (arrays.elements.length > 0 || arrays.rest.length !== 1 || isOptional(arrays.rest[0]!)) return undefined
      const item = compile(arrays.rest[0]!)
      if (item === undefined) return undefined
      return checked(ast, (input) => {
        if (!Array.isArray(input)) return refused
        const len = input.length
        const out = new Array<unknown>(len)
        for (let i = 0; i < len; i++) {
          const v = item(input[i])
          if (v === refused) return refused
          out[i] = v
        }
        return out
      })
    }
    case "Objects": {
      const objects = ast as SchemaAST.Objects
      if (objects.indexSignatures.length > 0 || objects.propertySignatures.length === 0) return undefined
      const names: Array<string> = []
      const parsers: Array<Parse> = []
      const optional: Array<boolean> = []
      for (const p of objects.propertySignatures) {
        // A symbol or number key, or `__proto__` (set by definition, not assignment): the schema's own.
        if (typeof p.name !== "string" || p.name === "__proto__" || names.includes(p.name)) return undefined
        const parse = compile(p.type)
        if (parse === undefined) return undefined
        names.push(p.name)
        parsers.push(parse)
        optional.push(isOptional(p.type))
      }
      const n = names.length
      return checked(ast, (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return refused
        const record = input as Record<string, unknown>
        const out: Record<string, unknown> = {}
        for (let i = 0; i < n; i++) {
          const name = names[i]!
          // As the interpreter has it: a key `in` the input (an inherited one too) is there.
          if (!(name in record)) {
            if (optional[i]) continue
            return refused
          }
          const v = parsers[i]!(record[name])
          if (v === refused) return refused
          out[name] = v
        }
        return out
      })
    }
    default:
      return undefined
  }
}

/** `parse(input)`, `refused` when it throws (a getter of the input's, a check's own throw): the schema's own parse then says what it makes of it. */
export const attempt = (parse: Parse, input: unknown): unknown => {
  try {
    return parse(input)
  } catch {
    return refused
  }
}
