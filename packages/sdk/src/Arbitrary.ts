/**
 * fast-check arbitraries from an event's Effect Schema: the schema's AST walked once. The checks'
 * own `arbitraryConstraint` annotations (lengths, patterns, bounds, integer) shape the generators;
 * a check without one (a custom filter) filters the values of its node. Numbers are finite: event
 * data travels as JSON, which has no NaN or Infinity.
 */
import fc from "fast-check"
import { Schema, SchemaAST } from "effect"

/** A schema node the testkit cannot generate values for; says which, where, and what to do. */
export class UnsupportedSchema extends Error {
  override readonly name = "UnsupportedSchema"
}

/** Collections are short unless the schema asks for more: a property runs many times. */
const defaultMaxItems = 5

interface Constraints {
  minLength?: number
  maxLength?: number
  patterns: Array<RegExp>
  minimum?: number
  maximum?: number
  exclusiveMinimum?: boolean
  exclusiveMaximum?: boolean
  integer?: boolean
}

const handled = new Set(["minLength", "maxLength", "patterns", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "number"])

/** The constraints of a node's checks, and whether some check is left to a filter. */
const constraintsOf = (ast: SchemaAST.AST): { readonly c: Constraints; readonly filter: boolean } => {
  const c: Constraints = { patterns: [] }
  let filter = false
  const add = (check: SchemaAST.Check<any>): void => {
    const own = (check.annotations as { arbitraryConstraint?: Record<string, any> } | undefined)?.arbitraryConstraint
    if (own === undefined) {
      if (check._tag === "FilterGroup") check.checks.forEach(add)
      else filter = true
      return
    }
    if (Object.keys(own).some((k) => !handled.has(k))) filter = true
    if (typeof own.minLength === "number") c.minLength = Math.max(c.minLength ?? 0, own.minLength)
    if (typeof own.maxLength === "number") c.maxLength = Math.min(c.maxLength ?? Infinity, own.maxLength)
    for (const p of own.patterns ?? []) c.patterns.push(new RegExp(p.source, p.flags))
    if (typeof own.minimum === "number" && (c.minimum === undefined || own.minimum >= c.minimum)) {
      c.exclusiveMinimum = own.minimum === c.minimum ? c.exclusiveMinimum === true || own.exclusiveMinimum === true : own.exclusiveMinimum === true
      c.minimum = own.minimum
    }
    if (typeof own.maximum === "number" && (c.maximum === undefined || own.maximum <= c.maximum)) {
      c.exclusiveMaximum = own.maximum === c.maximum ? c.exclusiveMaximum === true || own.exclusiveMaximum === true : own.exclusiveMaximum === true
      c.maximum = own.maximum
    }
    if (own.number === "integer") c.integer = true
  }
  ast.checks?.forEach(add)
  return { c, filter }
}

const string = (c: Constraints): fc.Arbitrary<string> => {
  const length = { ...(c.minLength === undefined ? {} : { minLength: c.minLength }), ...(c.maxLength === undefined ? {} : { maxLength: c.maxLength }) }
  if (c.patterns.length === 0) return fc.string(length)
  const [first, ...rest] = c.patterns
  const min = c.minLength ?? 0
  const max = c.maxLength ?? Infinity
  return fc.stringMatching(first!).filter((s) => s.length >= min && s.length <= max && rest.every((p) => p.test(s)))
}

const number = (c: Constraints, where: string): fc.Arbitrary<number> => {
  if (c.integer === true) {
    const min = c.minimum === undefined ? Number.MIN_SAFE_INTEGER : c.exclusiveMinimum === true && Number.isInteger(c.minimum) ? c.minimum + 1 : Math.ceil(c.minimum)
    const max = c.maximum === undefined ? Number.MAX_SAFE_INTEGER : c.exclusiveMaximum === true && Number.isInteger(c.maximum) ? c.maximum - 1 : Math.floor(c.maximum)
    if (min > max) throw new UnsupportedSchema(`${where}: no integer lies between ${c.minimum} and ${c.maximum}`)
    return fc.integer({ min: Math.max(min, Number.MIN_SAFE_INTEGER), max: Math.min(max, Number.MAX_SAFE_INTEGER) })
  }
  return fc.double({
    noNaN: true,
    noDefaultInfinity: true,
    ...(c.minimum === undefined ? {} : { min: c.minimum, minExcluded: c.exclusiveMinimum === true }),
    ...(c.maximum === undefined ? {} : { max: c.maximum, maxExcluded: c.exclusiveMaximum === true })
  })
}

const unsupported = (ast: SchemaAST.AST, where: string, what: string): never => {
  throw new UnsupportedSchema(
    `${where}: the testkit cannot generate ${what} (schema node ${ast._tag}); event data is JSON: use structs, strings, finite numbers, booleans, literals, unions and arrays, or build this field's arbitrary with fc yourself`
  )
}

const go = (ast: SchemaAST.AST, where: string): fc.Arbitrary<unknown> => {
  const { c, filter } = constraintsOf(ast)
  const base = node(ast, c, where)
  return filter ? base.filter(Schema.is(Schema.make(ast))) : base
}

const node = (ast: SchemaAST.AST, c: Constraints, where: string): fc.Arbitrary<unknown> => {
  switch (ast._tag) {
    case "String":
      return string(c)
    case "Number":
      return number(c, where)
    case "Boolean":
      return fc.boolean()
    case "Literal":
      return fc.constant(ast.literal)
    case "Null":
      return fc.constant(null)
    case "Undefined":
    case "Void":
      return fc.constant(undefined)
    case "Unknown":
    case "Any":
      return fc.jsonValue()
    case "Enum":
      return fc.constantFrom(...ast.enums.map(([, value]) => value))
    case "Union":
      return ast.types.length === 0 ? unsupported(ast, where, "a value of an empty union") : fc.oneof(...ast.types.map((t) => go(t, where)))
    case "Arrays": {
      if (ast.rest.length > 1) return unsupported(ast, where, "elements after a rest element")
      // Optional elements of a tuple are left out: a shorter tuple decodes.
      const elements = ast.elements.filter((e) => !SchemaAST.isOptional(e)).map((e, i) => go(e, `${where}[${i}]`))
      const head = fc.tuple(...elements)
      const rest = ast.rest[0]
      if (rest === undefined) return head
      const minLength = Math.max(0, (c.minLength ?? 0) - elements.length)
      const maxLength = Math.max(minLength, (c.maxLength ?? minLength + elements.length + defaultMaxItems) - elements.length)
      return fc.tuple(head, fc.array(go(rest, `${where}[]`), { minLength, maxLength })).map(([h, r]) => [...h, ...r])
    }
    case "Objects": {
      const model: Record<string, fc.Arbitrary<unknown>> = {}
      const required: Array<string> = []
      for (const p of ast.propertySignatures) {
        if (typeof p.name !== "string") return unsupported(ast, where, `a value for the symbol key ${String(p.name)}`)
        const path = where === "" ? p.name : `${where}.${p.name}`
        model[p.name] = go(p.type, path)
        if (!SchemaAST.isOptional(p.type)) required.push(p.name)
      }
      const record = fc.record(model, { requiredKeys: required })
      if (ast.indexSignatures.length === 0) return record
      const dictionaries = ast.indexSignatures.map((s) =>
        s.parameter._tag === "String" && s.parameter.checks === undefined
          ? fc.dictionary(fc.string(), go(s.type, `${where}[string]`), { maxKeys: defaultMaxItems })
          : unsupported(s.parameter, where, "keys of this kind (only plain string keys)")
      )
      return fc.tuple(record, ...dictionaries).map(([r, ...ds]) => Object.assign({}, ...ds, r))
    }
    case "Declaration":
      return unsupported(ast, where, "a value of a declared type (Date, a class, ...)")
    case "Suspend":
      return unsupported(ast, where, "a value of a recursive schema")
    default:
      return unsupported(ast, where, "a JSON value of this kind")
  }
}

/** A schema's values as a fast-check arbitrary; throws `UnsupportedSchema` naming the field it cannot generate. */
export const of = <A>(schema: Schema.Top & { readonly Type: A }, name = "schema"): fc.Arbitrary<A> => {
  try {
    return go(SchemaAST.toType(schema.ast), "") as fc.Arbitrary<A>
  } catch (e) {
    if (e instanceof UnsupportedSchema) throw new UnsupportedSchema(`${name}${e.message.startsWith(":") ? "" : " at "}${e.message}`)
    throw e
  }
}
