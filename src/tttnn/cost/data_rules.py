"""The plan's rows of the data and retrieval rules: corpus, fetch, prepare_model, chunk, embed, index, search."""

from __future__ import annotations

from pathlib import Path

from tttnn.config import (
    index_size_shards,
)
from tttnn.cost.archs import Arch, GiB, MiB, index_build_flops
from tttnn.cost.rates import Device, gpu_efficiency
from tttnn.cost.schedule import MAP_ROW_BYTES, fmt_count
from tttnn.jobs import (
    READ_BLOCK_ROWS,
    index_bytes,
    index_job_mem_mb,
    job_resource,
    parse_factory,
    search_job_mem_mb,
)
from tttnn.models.specs import looks_local


class DataRules:
    """Planner rows of the rules before the models run (mixed into :class:`tttnn.cost.plan.Planner`)."""

    def _corpus(self) -> None:
        cp, cal = self.corpus, self.cal["cpu"]
        docs = cp.train_docs + sum(cp.test_docs.values()) + sum(cp.valid_docs.values())
        if self.config["corpus"]["source"] == "pile":
            # one streaming job per train shard (its file(s), row groups of 64 MB), then one job that samples
            # the test and validation documents from the test split
            pile = self.config["corpus"].get("pile", {})
            local = looks_local(str(pile.get("train", "")), (".jsonl", ".zst", ".json", ".gz")) or isinstance(pile.get("train"), list)
            rate = cal["pile_bytes_per_s"] if local else min(cal["pile_bytes_per_s"], cal["download_bytes_per_s"])
            n_shards = self.config["corpus"]["n_shards"]
            rs = self.row("build_corpus_shard", threads=1)
            for _ in range(n_shards):
                rs.add_job(self.startup_light + cp.train_bytes / n_shards / rate)
            rs.work = f"{fmt_count(cp.train_docs)} train docs ({cp.train_bytes / GiB:.3g} GiB) in {n_shards} shards"
            rs.peak_mem_mb = self.base_light_mb() + 2 * 64 * self.text["pandas_ratio"]
            rs.mem_mb_asked = 2000
            rs.disk_mb = cp.train_bytes * self.text["parquet_ratio"] / MiB
            r = self.row("build_corpus", threads=1)
            r.add_job(self.startup_light + cp.test_split_bytes / rate)
            r.work = f"{fmt_count(docs - cp.train_docs)} test+valid docs sampled"
            r.peak_mem_mb = self.base_light_mb() + 2 * 64 * self.text["pandas_ratio"]
            r.mem_mb_asked = 2000
            r.disk_mb = sum(cp.test_bytes[t] * (cp.test_docs[t] + cp.valid_docs[t]) for t in cp.test_docs) / MiB
            return
        r = self.row("build_corpus", threads=1)
        r.add_job(self.startup_light + docs * cal["corpus_s_per_doc"])
        held_out = fmt_count(docs - cp.train_docs)
        r.work = f"{fmt_count(cp.train_docs)} train docs ({cp.train_bytes / GiB:.3g} GiB), {held_out} test+valid"
        r.peak_mem_mb = self.base_light_mb() + cp.train_bytes * self.text["pandas_ratio"] / MiB
        r.mem_mb_asked = 4000
        r.disk_mb = cp.train_bytes * self.text["parquet_ratio"] / MiB

    def _fetch(self) -> None:
        """fetch_hub: one local job (on the submitting host) per hub repository the config names."""
        from tttnn.models.fetch import hub_downloads

        wanted = hub_downloads(self.config)
        if not wanted:
            return
        sizes = {
            s["path"]: self.archs[m][0].params for m, s in self.config["models"].items() if isinstance(s["path"], str)
        }
        sizes[self.config["embedder"]["path"]] = self.embedder[0].params
        r = self.row("fetch_hub", threads=1)
        total = 0.0
        for item in wanted.values():
            nbytes = 4 * sizes.get(item["repo"], 0) if item["weights"] else 5e6  # float32 weights, or a tokenizer
            total += nbytes
            r.add_job(self.startup_light + nbytes / self.cal["cpu"]["download_bytes_per_s"])
        r.work = f"{len(wanted)} hub repositories ({total / GiB:.3g} GiB), local jobs on the submitting host"
        r.peak_mem_mb = self.base_light_mb()
        r.disk_mb = total / MiB

    def _prepare(self) -> None:
        cal = self.cal["cpu"]
        self._fetch()
        for m, spec in self.config["models"].items():
            arch, _ = self.archs[m]
            r = self.row("prepare_model", m, threads=self.threads)
            path = spec["path"]
            gguf = isinstance(path, dict) or str(path).endswith(".gguf") or ".gguf" in str(path)
            if gguf:  # dequantizing the weights, and building the tokenizer from the file's vocabulary
                secs = arch.params * cal["gguf_ns_per_param"] * 1e-9 + arch.vocab * cal["gguf_ms_per_token"] * 1e-3
                secs += cal.get("gguf_fixed_s", 0.0)  # GGUF reader and conversion code imported, file read cold
                r.work = f"dequantize {fmt_count(arch.params)} params"
                tok_mb = arch.vocab * self.text.get("gguf_tokenizer_kb_per_token", 0.0) / 1024
                r.peak_mem_mb = self.base_mb() + 4.6 * arch.params / MiB + tok_mb  # float32 model + file + tokenizer
            elif isinstance(path, str) and (Path(path).expanduser().exists() or path.startswith("package:")):
                secs = 2 * self.load_seconds(arch)
                r.work = f"copy {fmt_count(arch.params)} params"
                r.peak_mem_mb = self.base_mb() + 8 * arch.params / MiB
            else:  # a hub id: fetch_hub downloaded it; this job loads and saves the local copy
                secs = 2 * self.load_seconds(arch)
                r.work = f"copy {fmt_count(arch.params)} params (fetched by fetch_hub)"
                r.peak_mem_mb = self.base_mb() + 8 * arch.params / MiB
            r.add_job(self.startup + secs)
            r.mem_mb_asked = spec.get("prepare_mem_mb", 8000)
            r.disk_mb = 4 * arch.params / MiB

    def _chunk_embed_index(self) -> None:
        c, cp, cal = self.config, self.corpus, self.cal["cpu"]
        n_shards = c["corpus"]["n_shards"]
        shard_docs, shard_bytes, shard_chunks = (
            cp.train_docs / n_shards,
            cp.train_bytes / n_shards,
            cp.chunks / n_shards,
        )
        window = c.get("chunk", {}).get("mode", "document") == "window"
        pandas, parquet = self.text["pandas_ratio"], self.text["parquet_ratio"]
        # chunk
        r = self.row("chunk", threads=1)
        # windows need the embedder's tokenizer; whole documents only a regex word count
        secs = shard_bytes / (cal["tokenize_bytes_per_s"] if window else cal["regex_bytes_per_s"]) + shard_docs * 1e-5
        for _ in range(n_shards):
            r.add_job(self.startup_light + secs)
        r.work = f"{fmt_count(cp.train_docs)} docs -> {fmt_count(cp.chunks)} chunks"
        # streamed: 500 documents at a time, written in row groups of 1,000 chunks (tttnn.data.chunk)
        doc_bytes = shard_bytes / max(shard_docs, 1)
        r.peak_mem_mb = self.base_light_mb() + (500 * doc_bytes + 1000 * cp.chunk_bytes) * 2 * pandas / MiB
        r.mem_mb_asked = job_resource(c, "chunk", "mem_mb", 2000)
        r.disk_mb = cp.chunks * cp.chunk_bytes * parquet / MiB
        # embed
        emb, _ = self.embedder
        d = emb.d_model
        tokens = cp.embed_tokens
        flops_chunk = emb.forward_flops(tokens) * tokens
        dev = self.embed_device
        r = self.row("embed", device=dev)
        secs = shard_chunks * flops_chunk / self._embed_rate(dev)
        for _ in range(n_shards):
            r.add_job(self.embed_startup(emb) + secs)
        r.flops = cp.chunks * flops_chunk
        r.work = f"{fmt_count(cp.chunks)} chunks x {tokens:.0f} tokens ({fmt_count(cp.chunks * tokens)} tokens)"
        # streamed: one block of 16,384 texts (tttnn.retrieval.embed.BLOCK_ROWS) and their vectors, plus the model
        block = min(shard_chunks, 16_384)
        r.peak_mem_mb = self.base_mb() + (block * (cp.chunk_bytes * pandas + d * 4) + 4 * emb.params) / MiB
        r.mem_mb_asked = job_resource(c, "embed", "mem_mb", c["embedder"].get("mem_mb", 2000))
        r.disk_mb = cp.chunks * d * 4 / MiB
        # queries
        splits = ["test", "valid"] if c["corpus"].get("n_valid_docs") else ["test"]
        n_q = sum(cp.test_docs.values()) + (sum(cp.valid_docs.values()) if "valid" in splits else 0)
        q_tokens = min(
            c["embedder"].get("max_seq_length", 256), self.tokens(sum(cp.test_bytes.values()) / len(cp.test_bytes))
        )
        r = self.row("embed_queries", device=dev)
        fl = n_q * emb.forward_flops(q_tokens) * q_tokens
        r.add_job(self.embed_startup(emb) + fl / self._embed_rate(dev))
        r.flops, r.work = fl, f"{n_q} queries"
        r.peak_mem_mb = self.base_mb() + 4 * emb.params / MiB
        r.mem_mb_asked = job_resource(c, "embed_queries", "mem_mb", c["embedder"].get("mem_mb", 2000))
        r.disk_mb = n_q * d * 4 / MiB
        self.n_queries = n_q
        # index
        ix = c.get("index", {})
        factory = ix.get("factory", "Flat")
        ibytes = index_bytes(factory, int(shard_chunks), d)
        fl = index_build_flops(factory, int(shard_chunks), d, ix.get("train_size", 100_000))
        r = self.row("index")
        secs = fl / (cal["faiss_flops_per_s"] * self.cpu.thread_speed()) + shard_chunks * d * 4 / 2e9
        for _ in range(n_shards):
            r.add_job(self.startup_light + secs)
        r.flops = fl * n_shards
        r.work = f"{factory} over {fmt_count(cp.chunks)} vectors ({ibytes / MiB:,.0f} MiB per shard)"
        # read in blocks of 65,536 rows; IVF/PQ trains on a sample of train_size vectors (tttnn.retrieval.index)
        sample = 0 if factory == "Flat" else min(shard_chunks, ix.get("train_size", 100_000)) * d * 4
        r.peak_mem_mb = self.base_light_mb() + (ibytes + sample + min(shard_chunks, READ_BLOCK_ROWS) * d * 4) / MiB
        r.mem_mb_asked = job_resource(c, "index", "mem_mb", index_job_mem_mb(factory, int(shard_chunks), d, ix.get("train_size", 100_000)))
        r.disk_mb = ibytes * n_shards / MiB
        self.index_shard_bytes = ibytes
        # search (the map step): every query of every task and split against one shard
        k = c["retrieve"]["k"]
        f = parse_factory(factory)
        rerank = ix.get("rerank")
        if f["kind"] == "flat" and not f["nlist"]:
            per_q = 2.0 * shard_chunks * d / (cal["flat_search_flops_per_s"] * self.cpu.thread_speed())
        else:
            scanned = shard_chunks * min(1.0, ix.get("nprobe", 16) / max(int(f["nlist"]), 1))
            code = int(f.get("m", d)) if f["kind"] == "pq" else d * 4
            per_q = cal["ivfpq_query_s"] + scanned * code * cal["pq_ns_per_code_byte"] * 1e-9
            per_q += (rerank or 0) * cal["rerank_s_per_candidate"]
        nb_text = cp.neighbor_bytes and max(cp.neighbor_bytes.values()) or cp.chunk_bytes
        search_gpu = int(ix.get("search_gpus", 0) or 0) > 0 and self.plan["gpus"] > 0
        if search_gpu:  # faiss GPU: the same scan at the GPU's float32 rate (one batched call for all queries)
            g = self.plan["gpu"]
            flops = 2.0 * shard_chunks * d if (f["kind"] == "flat" and not f["nlist"]) else per_q * 10e9
            per_q = flops / (self.cal["gpu"]["peaks"][g]["float32"] * gpu_efficiency(self.cal, 10**6))
            r = self.row("search_shard", device=Device(g, self.cal, self.threads))
            r.gpu_mem_mb = ibytes / MiB
        else:
            r = self.row("search_shard")
        load = ibytes / self.cal["cpu"]["load_bytes_per_s"] if search_gpu else 0.0  # read, then copied over
        for _ in range(n_shards):
            r.add_job(self.startup_light + load + n_q * per_q)
        r.work = f"{n_q} queries x {n_shards} shards, k = {k}"
        # the index, the queries and one batch of 1,024 rows of text (the copy filter streams the tables)
        batch_text = 1024 * max(cp.chunk_bytes, shard_bytes / max(shard_docs, 1)) * pandas
        r.peak_mem_mb = self.base_light_mb() + (ibytes + n_q * d * 4 + batch_text) / MiB
        r.mem_mb_asked = job_resource(c, "search_shard", "mem_mb", search_job_mem_mb(ibytes))
        # the map step writes ids, distances and rows only (~100 bytes a neighbour); texts come after the merge
        per_shard = sum((cp.test_docs[t] + cp.valid_docs[t]) * k * MAP_ROW_BYTES for t in cp.test_docs)
        r.disk_mb = n_shards * per_shard * parquet / MiB
        self.nb_text = nb_text

    def embed_startup(self, emb: Arch) -> float:
        """An embed job's start-up with its embedder loaded (measured by `snakemake calibrate`, else estimated)."""
        cal = self.cal["cpu"]
        return cal.get("embed_startup_s") or self.startup + 4 * emb.params / cal["load_bytes_per_s"]

    def _embed_rate(self, dev: Device) -> float:
        """FLOP/s of the embedder in its ``embedder.dtype``: on a GPU the dtype's published peak (half precision on
        the tensor cores; ASSUMED efficiency), on CPU the calibrated float32 rate times the dtype's factor."""
        dtype = self.config["embedder"].get("dtype", "float32")
        if dev.gpu:
            peaks = self.cal["gpu"]["peaks"][dev.kind]
            return peaks["bfloat16" if dtype == "float16" else dtype] * gpu_efficiency(self.cal, 10**6)
        return self.cal["cpu"]["embed_flops_per_s"] * dev.thread_speed() * self.cal["cpu"]["dtype_factor"].get(dtype, 1.0)

    def _retrieve(self, trained: list[str]) -> None:
        c, cp = self.config, self.corpus
        methods = self.methods
        k = c["retrieve"]["k"]
        need_test = set(self.tasks) if trained else set()
        uses_nb = any(m in methods for m in ("incontext", "interpolation")) or any(
            m.startswith("order-") for m in methods
        )
        if self.method_models and uses_nb:
            need_test |= set(self.all_tasks)
        need_valid = set(self.all_tasks) if (self.method_models and "interpolation_valid" in methods) else set()
        if self.tuned:  # ttt.lr: auto tunes on the validation documents
            need_valid = set(self.all_tasks)
        r = self.row("retrieve", threads=1)
        n_shards, k_bytes = c["corpus"]["n_shards"], self.text["parquet_ratio"]
        pandas = self.text["pandas_ratio"]

        def nb(task: str, split: str = "test") -> float:
            """Bytes of a task's merged neighbour list (its queries x k neighbours' texts)."""
            q = (cp.test_docs if split == "test" else cp.valid_docs)[task]
            return q * k * (cp.neighbor_bytes[task] + 64)

        def parts(task: str, split: str = "test") -> float:
            """Bytes of a task's map outputs from one shard (ids, distances, rows: no texts)."""
            return (cp.test_docs if split == "test" else cp.valid_docs)[task] * k * MAP_ROW_BYTES

        # reads every shard's id lists, keeps the top k, then reads those k neighbours' texts once
        for t, split in [*((t, "test") for t in need_test), *((t, "valid") for t in need_valid)]:
            r.add_job(self.startup_light + 0.5 + (n_shards * parts(t, split) + nb(t, split)) / 1e8)
        r.work = f"{len(need_test)} test + {len(need_valid)} valid merges of {n_shards} shards"
        r.disk_mb = (sum(nb(t) for t in need_test) + sum(nb(t, "valid") for t in need_valid)) * k_bytes / MiB
        peak = max([n_shards * parts(t) + nb(t) for t in need_test] or [0])
        r.peak_mem_mb = self.base_light_mb() + peak * pandas / MiB
        r.mem_mb_asked = job_resource(c, "retrieve", "mem_mb", 2000)
        subsets = (
            index_size_shards(c) if (self.method_models and any(m.startswith("index_size-") for m in methods)) else []
        )
        if subsets:
            r = self.row("retrieve_subset", threads=1)
            for n in subsets:
                for t in self.all_tasks:
                    r.add_job(self.startup_light + 0.5 + (n * parts(t) + nb(t)) / 1e8)
            r.work = f"{len(subsets)} index sizes x {len(self.all_tasks)} tasks"
            r.disk_mb = len(subsets) * sum(nb(t) for t in self.all_tasks) * k_bytes / MiB
            peak = max(max(subsets) * parts(t) + nb(t) for t in self.all_tasks)
            r.peak_mem_mb = self.base_light_mb() + peak * pandas / MiB
            r.mem_mb_asked = job_resource(c, "retrieve_subset", "mem_mb", 2000)

    # -- model work ----------------------------------------------------------------------------------------
