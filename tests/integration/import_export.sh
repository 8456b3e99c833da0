#!/bin/bash
# Lossless round trips: export is byte-identical (sha256) to the source for
# a generated sharded directory and single files (the real models:
# real_models.sh).
. "$(dirname "$0")/lib.sh"

tczfs init >/dev/null

# a sharded directory with index, config and tokenizer
"$GEN" "$T/src" --size-mb 6 --shards 3 --dtype bf16 --seed 7
tczfs import "$T/src" --name sharded --jobs 2 --quiet >/dev/null
tczfs export sharded -o "$T/back"
for f in "$T"/src/*; do
	b=$(basename "$f")
	[ -f "$T/back/$b" ] || fail "sharded: $b not exported"
	[ "$(sha "$f")" = "$(sha "$T/back/$b")" ] || fail "sharded: $b differs"
done
[ "$(ls "$T/src" | wc -l)" = "$(ls "$T/back" | wc -l)" ] ||
	fail "sharded: exported a different set of files"

# the merged model.safetensors holds every tensor of the shards, equal
tczfs export sharded --file model.safetensors -o "$T/merged.safetensors"
$PY - "$T/src" "$T/merged.safetensors" <<'PY'
import glob, sys
from stfile import tensors

src = {}
for p in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    src.update(tensors(p))
merged = tensors(sys.argv[2])
assert src.keys() == merged.keys(), "tensor sets differ"
for k in src:
    assert src[k] == merged[k], k
print("merged model.safetensors: %d tensors equal" % len(src))
PY

# chunk sizes: any of 16..1024 KiB gives the same bytes back
"$GEN" "$T/c.safetensors" --size-mb 3 --dtype bf16 --seed 9
for k in 16 100 1024; do
	tczfs import "$T/c.safetensors" --name "c$k" --chunk-kib "$k" --quiet >/dev/null
	tczfs export "c$k" -o "$T/c$k.out"
	cmp -s "$T/c.safetensors" "$T/c$k.out" || fail "--chunk-kib $k: export differs"
done
expect_fail "--chunk-kib 8" tczfs import "$T/c.safetensors" --name c8 --chunk-kib 8
grep -q "16..1024" "$T/err" || fail "--chunk-kib 8: $(cat "$T/err")"
tczfs ls | grep -q "^c8" && fail "a refused import stored a model"

# single-file import of a generated f16 model, and a zero-tensor edge case
"$GEN" "$T/g.safetensors" --size-mb 2 --dtype f16
tczfs import "$T/g.safetensors" --name g16 --quiet >/dev/null
tczfs export g16 -o "$T/g16.out"
[ "$(sha "$T/g.safetensors")" = "$(sha "$T/g16.out")" ] || fail "g16 differs"

for f in "$SRC_ROOT"/tests/corpus/safetensors/valid-*.safetensors; do
	name=v$(basename "$f" .safetensors | tr -cd 'a-z0-9')
	tczfs import "$f" --name "$name" --quiet >/dev/null
	tczfs export "$name" -o "$T/$name.out"
	cmp -s "$f" "$T/$name.out" || fail "$name differs"
done
tczfs verify >/dev/null || fail "verify after imports"
echo ok
