#!/bin/bash
# `bench/src/tailFlags.sh <rounds> <rate> <count> <accept|full> <outfile> <flags> [<flags> ...]`:
# tail.ts (TAIL_GC=1) on one runtime tree (TAIL_TREE, /work/wt-base by default) with each V8/Node
# flag set in turn (RT_NODE_ARGS; "" is the runtime's own flags alone), in interleaved rounds
# (alternating the order), one line per run appended to <outfile>: the p99, page faults, promoted
# 4 KiB pages and GC time per 1,000 messages, the machine load (<outfile>: a fresh one, the summary reads it all); then per flag set the medians, the
# median of the per-round ratios to the first set's and in how many rounds it was lower.
export PATH="$HOME/.node24/bin:$PATH"
rounds=$1; rate=$2; count=$3; mode=$4; out=$5; shift 5
sets=("$@")
cd "$(dirname "$0")/../.."
n=${#sets[@]}
for ((r = 0; r < rounds; r++)); do
  if ((r % 2 == 0)); then order=$(seq 0 $((n - 1))); else order=$(seq $((n - 1)) -1 0); fi
  for i in $order; do
    f="${sets[$i]}"
    a=""; [ "$mode" = accept ] && a=accept
    res=$(TAIL_GC=1 TAIL_TREE="${TAIL_TREE:-/work/wt-base}" RT_NODE_ARGS="$f" node bench/src/tail.ts "$rate" "$count" $a 2>&1)
    p99=$(echo "$res" | grep -o 'p99 [0-9.]*' | head -1 | cut -d' ' -f2)
    faults=$(echo "$res" | grep -o 'page faults [0-9.]*' | cut -d' ' -f3)
    pages=$(echo "$res" | grep -o '([0-9.]* 4 KiB pages' | tr -d '(' | cut -d' ' -f1)
    gcs=$(echo "$res" | grep -o 'gc time [0-9.]* ms' | cut -d' ' -f3)
    echo "round $r set[$i]='$f' p99=$p99 faults/1k=$faults promotedPages/1k=$pages gcms/1k=$gcs load=$(cut -d' ' -f1 /proc/loadavg) $(date +%H:%M:%S)" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import sys,re,statistics as st
rows=[l for l in open(sys.argv[1]) if l.startswith('round')]
d={}
for l in rows:
    r=int(l.split()[1]); i,s=re.search(r"set\[(\d+)\]='([^']*)'",l).groups()
    if i=='0': first=s
    v={k:float(x) for k,x in re.findall(r"(p99|faults/1k|promotedPages/1k|gcms/1k)=([\d.]+)",l)}
    d.setdefault(s,{})[r]=v
base=d[first]
for s,rs in d.items():
    out=[s or '(own flags)']
    for k in ['p99','faults/1k','promotedPages/1k','gcms/1k']:
        med=st.median(v[k] for v in rs.values())
        ratios=[rs[r][k]/base[r][k] for r in rs if r in base]
        wins=sum(1 for r in rs if r in base and rs[r][k]<base[r][k])
        out.append(f"{k} med {med:.1f} ratio {st.median(ratios):.2f}x lower in {wins}/{len(rs)}")
    print(' | '.join(out))
PY
