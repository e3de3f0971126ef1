"""ParallelPerceptionModule: every sensor at once, then attention picks what matters.

One run: observe the world (one consistent read of the cells in view), cut the
observation into one input per sensor, look every sensor's input up in the shared
result cache at once, process the misses (concurrently when a sensor asks the model
for a description — the wait worth overlapping; pure processing runs inline, where a
thread hand-off would cost more than the work), rank by sensor weight × confidence and
keep the top ``attention_bandwidth``. The original cut the task list to
the bandwidth *before* ranking, so a late, important sensor could never win.

Results are PerceptionResult records (dicts), so ``run()`` returns JSON as it is, in
process or as a task on a worker. With ``store_percepts`` the perceived events not
already among the agent's latest ``retention`` events go into its AssociativeMemory
(as generative agents' perceive does), which is what reflection and retrieval read:
their poignancy ratings are asked of the model at once and the events written in one
round trip.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

import redis

from ..arguments import is_whole
from ..core.fanout import fan_out
from ..ids import unique_hex
from ..keys import Keys
from .perception_cache import PerceptionCache
from .plumbing import (ConfiguredModule, associative_memory, llm_tag, resolve_agent_id, resolve_connection,
                       resolve_environment, resolve_llm)
from .records import PerceptionMetrics, PerceptionResult
from .sensors import PROCESSORS, SENSOR_WEIGHTS, SensorType, extract_inputs

HISTORY_LENGTH = 100


class ParallelPerceptionModule(ConfiguredModule):
    def __init__(self, agent_state: Any = None, max_workers: int = 3, attention_bandwidth: int = 5,
                 vision_radius: int = 4, enable_caching: bool = True, *, environment: Any = None,
                 world: str | None = None, agent_id: str | None = None, cache_ttl: float = 300.0,
                 store_percepts: bool = False, retention: int = 5, memory_name: str = "default",
                 llm: Any = None, describe_with_llm: bool = False, connection: redis.Redis | None = None,
                 redis_url: str | None = None, prefix: str | None = None):
        """``environment``: an Environment object (this process only); ``world``: the name
        of a GridWorld in Redis (JSON config, so workers can rebuild it). ``llm``: a client
        or "fake"/"openai"; with ``describe_with_llm`` each percept gets an LLM summary
        (cached with it). Everything except environment/llm/connection is JSON."""
        for name, value in (("max_workers", max_workers), ("attention_bandwidth", attention_bandwidth),
                            ("vision_radius", vision_radius)):
            if not is_whole(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        config = {"max_workers": max_workers, "attention_bandwidth": attention_bandwidth,
                  "vision_radius": vision_radius, "enable_caching": enable_caching, "world": world,
                  "agent_id": agent_id, "cache_ttl": cache_ttl, "store_percepts": store_percepts,
                  "retention": retention, "memory_name": memory_name,
                  "llm": llm if isinstance(llm, str) else None, "describe_with_llm": describe_with_llm,
                  "redis_url": redis_url, "prefix": prefix}
        super().__init__(agent_state, **config)
        self.max_workers = max_workers
        self.attention_bandwidth = attention_bandwidth
        self.vision_radius = vision_radius
        self.enable_caching = enable_caching
        self.store_percepts = store_percepts
        self.retention = retention
        self.describe_with_llm = describe_with_llm
        self.connection = resolve_connection(agent_state, connection, redis_url)
        self.keys = Keys(prefix)
        self.agent_id = resolve_agent_id(agent_state, agent_id)
        self.environment = resolve_environment(environment, world, self.connection, prefix)
        self.llm = resolve_llm(llm, self.connection)
        self.cache = PerceptionCache(self.connection, self.keys, cache_ttl)
        self._memory_name = memory_name
        self._prefix = prefix
        self._guard = threading.Lock()
        self._active = 0
        self._counts = {"tasks": 0, "time": 0.0, "errors": 0, "cache_hits": 0, "cache_misses": 0,
                        "peak": 0, "runs": 0}
        self._by_sensor: dict[str, int] = {}
        self.processing_history: deque[PerceptionResult] = deque(maxlen=HISTORY_LENGTH)
        self._closed = False

    # --- one perception cycle ----------------------------------------------------------
    def run(self) -> list[PerceptionResult]:
        if self._closed:
            raise RuntimeError("this ParallelPerceptionModule was shut down")
        observation = self.observe()
        inputs = extract_inputs(observation, self.attention_bandwidth)
        results = self.process_all(inputs)
        attended = self.attend(results)
        with self._guard:
            self._counts["runs"] += 1
            self.processing_history.extend(attended)
        if self.store_percepts:
            self._store(attended)
        return attended

    def observe(self) -> dict[str, Any]:
        """This agent's view of the world now (time only, without an environment)."""
        if self.environment is None:
            now = datetime.now()
            return {"agent_id": self.agent_id, "position": None, "radius": self.vision_radius,
                    "tiles": [], "agents": [], "time": {"tick": None, "clock": now.strftime("%H:%M")}}
        return self.environment.observe(self.agent_id, self.vision_radius)

    def process_all(self, inputs: dict[SensorType, dict]) -> list[PerceptionResult]:
        """Process every sensor (a cached result when the same input was seen in any
        process within the TTL); a sensor that fails is counted as an error and left
        out, the others still count."""
        sensors = list(inputs)
        llm = llm_tag(self.llm) if self.describe_with_llm else None
        keys = [self.cache.key_for(s, inputs[s], llm) for s in sensors] if self.enable_caching else []
        cached = self.cache.get_many(keys) if keys else [None] * len(sensors)
        misses = [i for i, hit in enumerate(cached) if hit is None]

        def process(i: int):
            try:
                return self._process_one(sensors[i], inputs[sensors[i]], cached[i])
            except Exception as exc:  # one sensor's failure must not blind the others
                self._count_error(sensors[i], exc)
                return None

        if self.describe_with_llm and self.llm is not None and len(misses) > 1:
            done = dict(zip(misses, fan_out(process, misses, self.max_workers)))
        else:
            done = {i: process(i) for i in misses}
        results = [done[i] if cached[i] is None else process(i) for i in range(len(sensors))]
        if keys:
            fresh = {keys[i]: (done[i]["processed_data"], done[i]["confidence"])
                     for i in misses if done[i] is not None}
            self.cache.record(fresh, hits=len(sensors) - len(misses), misses=len(misses))
        return [r for r in results if r is not None]

    def attend(self, results: list[PerceptionResult]) -> list[PerceptionResult]:
        """The ``attention_bandwidth`` results with the highest weight × confidence
        (ties: the sensor order, which is the order processed; docs/compat.md)."""
        ranked = sorted(enumerate(results),
                        key=lambda ir: (-SENSOR_WEIGHTS[SensorType(ir[1]["sensor_type"])] * ir[1]["confidence"],
                                        ir[0]))
        return [r for _, r in ranked[:self.attention_bandwidth]]

    def _process_one(self, sensor: SensorType, data: dict, cached: dict | None = None) -> PerceptionResult:
        with self._guard:
            self._active += 1
            self._counts["peak"] = max(self._counts["peak"], self._active)
        started = time.perf_counter()
        try:
            if cached is not None:
                processed, confidence = cached["processed_data"], cached["confidence"]
            else:
                processed, confidence = PROCESSORS[sensor](data)
                if self.describe_with_llm and self.llm is not None:
                    processed = {**processed, "summary": self.llm.complete(
                        f"In one sentence, what does {self.agent_id} notice? ({sensor.value}) {processed}")}
            elapsed = time.perf_counter() - started
        finally:
            with self._guard:
                self._active -= 1
        with self._guard:
            self._counts["tasks"] += 1
            self._counts["time"] += elapsed
            if self.enable_caching:
                self._counts["cache_hits" if cached is not None else "cache_misses"] += 1
            self._by_sensor[sensor.value] = self._by_sensor.get(sensor.value, 0) + 1
        return PerceptionResult(
            task_id=f"perc_{unique_hex(12)}", sensor_type=sensor.value, processed_data=processed,
            confidence=round(float(confidence), 6), processing_time=elapsed,
            metadata={"cached": cached is not None, "weight": SENSOR_WEIGHTS[sensor], "agent_id": self.agent_id},
            timestamp=time.time())

    def _count_error(self, sensor: SensorType, why: Any) -> None:
        self.logger.warning("sensor %s failed for agent %s: %s", sensor.value, self.agent_id, why)
        with self._guard:
            self._counts["errors"] += 1

    # --- memory ------------------------------------------------------------------------
    def _store(self, attended: list[PerceptionResult]) -> int:
        """Add newly perceived events to the agent's AssociativeMemory; returns how many."""
        events: list[dict] = []
        for result in attended:
            if result["sensor_type"] == SensorType.ENVIRONMENTAL.value:
                events += result["processed_data"]["events"]
        if not events:
            return 0
        memory = associative_memory(self.agent_id, self._memory_name, self.connection, self._prefix)
        seen = memory.get_summarized_latest_events(self.retention)
        new = []
        for event in events:
            spo = (event["subject"], event["predicate"], event["object"])
            if spo not in seen:
                seen.add(spo)
                new.append(event)
        if not new:
            return 0

        def rate(event: dict) -> tuple:
            description = event["description"]
            embedding = (description, self.llm.embed(description)) if self.llm is not None else None
            # Keywords as generative agents' perceive takes them: the event's subject and object.
            keywords = list(dict.fromkeys(k for k in (event["subject"], event["object"]) if k))
            return ("event", datetime.now(), None, event["subject"], event["predicate"], event["object"],
                    description, keywords, self._poignancy(event), embedding, None)

        memory.add_many(fan_out(rate, new) if self.llm is not None else [rate(e) for e in new])
        return len(new)

    def _poignancy(self, event: dict) -> float:
        """LLM-rated 1..10 when an LLM is configured (as generative agents do), else a
        rule: interactions matter, idle things barely do."""
        if self.llm is not None:
            reply = self.llm.complete(f"On the scale of 1 to 10, how poignant is this for "
                                      f"{self.agent_id}: {event['description']}? Answer with a number.")
            digits = "".join(ch for ch in reply if ch.isdigit())[:2]
            if digits:
                return float(max(1, min(10, int(digits))))
        if event["predicate"] != "is":
            return 6.0
        return 1.0 if event["object"] in ("idle", "off") else 3.0

    # --- reporting -----------------------------------------------------------------------
    def get_perception_metrics(self) -> PerceptionMetrics:
        """This instance's counters (a worker reports its own); shared cache counters are
        in :meth:`get_cache_stats`."""
        with self._guard:
            c = dict(self._counts)
            by_sensor = dict(self._by_sensor)
        lookups = c["cache_hits"] + c["cache_misses"]
        attempted = c["tasks"] + c["errors"]
        return PerceptionMetrics(
            total_tasks_processed=c["tasks"],
            average_processing_time=c["time"] / c["tasks"] if c["tasks"] else 0.0,
            tasks_by_sensor_type=by_sensor, concurrent_processing_peak=c["peak"],
            cache_hit_rate=c["cache_hits"] / lookups if lookups else 0.0,
            error_rate=c["errors"] / attempted if attempted else 0.0,
            cache_hits=c["cache_hits"], cache_misses=c["cache_misses"], errors=c["errors"], runs=c["runs"])

    def get_cache_stats(self) -> dict[str, int]:
        """Cache hits, misses and writes summed over every process sharing this Redis."""
        return self.cache.stats()

    def get_processing_status(self) -> dict[str, Any]:
        with self._guard:
            active = self._active
            history = len(self.processing_history)
        return {"agent_id": self.agent_id, "active_tasks": active, "max_workers": self.max_workers,
                "processing_history_length": history, "attention_bandwidth": self.attention_bandwidth,
                "vision_radius": self.vision_radius, "caching_enabled": self.enable_caching,
                "environment": type(self.environment).__name__ if self.environment is not None else None,
                "is_shutdown": self._closed}

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting runs. Never raises (the original passed a timeout= that
        ThreadPoolExecutor.shutdown does not take)."""
        self._closed = True
