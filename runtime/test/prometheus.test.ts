/** The strict Prometheus parser the observability tests rely on refuses what Prometheus would. */
import { describe, expect, it } from "vitest"
import { parse } from "./prometheus.ts"

const good = `# HELP a_total Things.
# TYPE a_total counter
a_total{p="x",q="a \\"b\\" \\\\ c\\nd"} 3
a_total{p="y"} 0
# TYPE h histogram
h_bucket{le="0.1"} 1
h_bucket{le="1"} 2
h_bucket{le="+Inf"} 2
h_sum 0.55
h_count 2
# TYPE g gauge
g -1.5e3
`

describe("the strict Prometheus text parser", () => {
  it("reads well-formed exposition", () => {
    const e = parse(good)
    expect(e.value("a_total", { p: "x", q: 'a "b" \\ c\nd' })).toBe(3)
    expect(e.sum("a_total")).toBe(3)
    expect(e.value("h_count")).toBe(2)
    expect(e.value("g")).toBe(-1500)
    expect(e.types.get("h")).toBe("histogram")
  })

  it.each([
    ["no trailing newline", good.trimEnd()],
    ["a sample without TYPE", "x 1\n"],
    ["a bad value", "# TYPE x gauge\nx one\n"],
    ["a bad metric name", "# TYPE 1x gauge\n1x 1\n"],
    ["an unquoted label", "# TYPE x gauge\nx{a=b} 1\n"],
    ["a bad escape", '# TYPE x gauge\nx{a="\\t"} 1\n'],
    ["a series twice", '# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n'],
    ["an unknown type", "# TYPE x thing\nx 1\n"],
    ["TYPE after samples", "# TYPE x gauge\nx 1\n# TYPE x gauge\n"],
    ["non-cumulative buckets", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n'],
    ["no +Inf bucket", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_sum 1\nh_count 2\n'],
    ["_count unlike +Inf", '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n']
  ])("refuses %s", (_what, text) => {
    expect(() => parse(text)).toThrow()
  })
})
