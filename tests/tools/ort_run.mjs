// Runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU) and prints
// every output as JSON: {name: {"type", "dims", "hex"}}, hex being the
// output's raw little-endian bytes, so two runs compare bit for bit.
// Usage: node ort_run.mjs MODEL INPUTS.json
// INPUTS.json: {name: {"type": "float32" | "int64" | ..., "dims": [...],
// "data": [numbers]}}. onnxruntime-node is resolved from the working
// directory's node_modules (the tests install it in a scratch directory).
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

const [model, inputs] = process.argv.slice(2);
if (!model || !inputs) {
	console.error("usage: node ort_run.mjs MODEL INPUTS.json");
	process.exit(2);
}
const require = createRequire(path.join(process.cwd(), "noop.js"));
const ort = require(require.resolve("onnxruntime-node"));

const arrays = {
	float32: Float32Array, float64: Float64Array, int32: Int32Array,
	int64: BigInt64Array, uint8: Uint8Array, int8: Int8Array,
	bool: Uint8Array,
};
const feeds = {};
for (const [name, v] of Object.entries(JSON.parse(fs.readFileSync(inputs)))) {
	const A = arrays[v.type];
	const data = v.type === "int64" ? A.from(v.data.map(BigInt)) : A.from(v.data);
	feeds[name] = new ort.Tensor(v.type, data, v.dims);
}
const sess = await ort.InferenceSession.create(model, {
	executionProviders: ["cpu"], intraOpNumThreads: 1, interOpNumThreads: 1,
	graphOptimizationLevel: "all",
});
const res = await sess.run(feeds);
const out = {};
for (const name of Object.keys(res).sort()) {
	const t = res[name];
	const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
	out[name] = { type: t.type, dims: t.dims, hex: b.toString("hex") };
}
process.stdout.write(JSON.stringify(out) + "\n");
