"""The active-learning loop for one project: retrain the student, then pick and pre-label a batch."""

import logging
import time

import numpy as np

from .budget import TeacherBudget, label_within_budget
from .jobs.queue import JobKind
from .labels import LabelSpec, UnsupportedConfigError, parse_label_config, task_text
from .prediction import pool_uncertainty
from .sampling import GREEDY_STRATEGIES, select
from .store import version_name
from .students import NotEnoughDataError
from .training import block_examples, train_bundle

logger = logging.getLogger(__name__)

RANK_KEY = "mraru_rank"


def run_job_kind(services, kind: JobKind, project_id: int, job_id: str | None) -> dict:
    """Run one job while holding the (kind, project) run lock of the queue.

    A job whose every request was already served by an earlier run ends at once, so a job queued
    twice (a re-queue after a lost worker, a late rq retry) never retrains twice. A round that
    Label Studio fails is deferred with exponential backoff (`MRARU_LS_BACKOFF`); its first
    failure is logged once, later ones only at DEBUG.
    """
    from .ls.client import LabelStudioError

    store = services.store
    with services.queue.hold(kind, project_id, job_id):
        requested, done = store.job_state(kind.value, project_id)
        if requested and requested <= done:
            logger.info("project=%s job=%s %s skipped: every request was already served", project_id, job_id,
                        kind.value)
            return {"status": "skipped", "reason": "up to date"}
        logger.info("project=%s job=%s %s started (request %s)", project_id, job_id, kind.value, requested)
        try:
            result = retrain_project(services, project_id) if kind is JobKind.RETRAIN else run_round(services,
                                                                                                    project_id)
        except LabelStudioError as exc:
            return _defer(services, kind, project_id, exc)
        except Exception:
            store.finish_job(kind.value, project_id, requested, failed=True)
            raise
        deferrals = store.finish_job(kind.value, project_id, requested)
        if deferrals:
            logger.info("project=%s %s resumed after %s deferrals", project_id, kind.value, deferrals)
        return result


def _defer(services, kind: JobKind, project_id: int, exc: Exception) -> dict:
    settings = services.settings
    deferrals = services.store.defer_job(kind.value, project_id)
    delay = min(settings.ls_backoff_max, settings.ls_backoff * 2 ** (deferrals - 1))
    if deferrals == 1:
        logger.warning("project=%s %s deferred: Label Studio failed: %s; retrying with backoff from %.1f s "
                       "(logged once until it succeeds)", project_id, kind.value, exc, delay)
    else:
        logger.debug("project=%s %s deferred again (%s): %s", project_id, kind.value, deferrals, exc)
    services.queue.defer(kind, project_id, delay)
    return {"status": "deferred", "retry_in": delay, "deferrals": deferrals}


def _project_spec(services, project_id: int) -> LabelSpec | None:
    config = services.store.project_config(project_id)
    if config is None:
        logger.warning("project=%s is unknown: Label Studio has not called /setup for it yet", project_id)
        return None
    try:
        return parse_label_config(config)
    except UnsupportedConfigError as exc:
        logger.warning("project=%s label config cannot be served: %s", project_id, exc)
        return None


def sync_annotations(services, project_id: int, strict: bool = False) -> None:
    """Replace the stored annotations with Label Studio's, when Label Studio is reachable.

    Label Studio sends each webhook once, with a 1 s timeout, so webhooks can be lost. A retrain
    therefore starts from Label Studio's own list, and falls back to webhook data without it.
    With `strict` (rounds, which need Label Studio anyway) the `LabelStudioError` is raised.
    """
    client = services.label_studio
    if client is None:
        return
    from .ls.client import LabelStudioError

    try:
        records = client.list_annotations(project_id)
    except LabelStudioError as exc:
        if strict:
            raise
        logger.warning("project=%s annotation sync failed, training on webhook data: %s", project_id, exc)
        return
    services.store.replace_annotations(project_id, records)


def retrain_project(services, project_id: int) -> dict:
    """Fit a new student on every annotation and publish it as the next version."""
    spec = _project_spec(services, project_id)
    if spec is None:
        return {"status": "skipped", "reason": "unknown or unsupported project"}
    sync_annotations(services, project_id)
    annotations = services.store.annotations(project_id)
    settings = services.settings
    started = time.perf_counter()
    try:
        bundle = train_bundle(
            spec,
            annotations,
            settings.student,
            label_config=services.store.project_config(project_id) or "",
            random_state=settings.seed,
            min_examples=settings.min_train_examples,
            features=settings.features,
        )
    except NotEnoughDataError as exc:
        logger.info("project=%s not retrained, keeping %s: %s", project_id,
                    services.store.model_version(project_id), exc)
        return {"status": "skipped", "reason": str(exc)}
    version = services.store.publish(project_id, bundle)
    logger.info("project=%s published %s (%s examples, %.2f s)", project_id, version,
                bundle.n_examples, time.perf_counter() - started)
    services.queue.request(JobKind.ROUND, project_id)
    return {"status": "trained", "model_version": version, "examples": bundle.n_examples}


def _few_shot_examples(block, annotations, limit: int) -> list[tuple[str, tuple[str, ...]]]:
    """Pick up to `limit` annotated examples, taking classes in turn so each label is shown."""
    by_label: dict[str, list] = {}
    for _, text, labels in block_examples(block, annotations):
        by_label.setdefault(labels[0] if labels else "", []).append((text, labels))
    examples = []
    while len(examples) < limit and any(by_label.values()):
        for label in list(by_label):
            if by_label[label] and len(examples) < limit:
                examples.append(by_label[label].pop(0))
    return examples


def run_round(services, project_id: int) -> dict:
    """Select the next batch with the configured strategy, pre-label it with the teacher and put
    it at the head of the project's queue in Label Studio."""
    client = services.label_studio
    if client is None:
        logger.warning("project=%s round skipped: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY", project_id)
        return {"status": "skipped", "reason": "Label Studio is not configured"}
    spec = _project_spec(services, project_id)
    if spec is None:
        return {"status": "skipped", "reason": "unknown or unsupported project"}
    settings = services.settings
    store = services.store
    sync_annotations(services, project_id, strict=True)
    bundle = store.load_latest(project_id)
    model_version = bundle.model_version if bundle else version_name(0)

    picked = store.picked_ranks(project_id)
    pool = []
    for task in client.iter_tasks(project_id):
        if task.get("total_annotations") or task.get("cancelled_annotations") or task["id"] in picked:
            continue
        if all(task_text(task.get("data"), key) is not None for key in spec.value_keys):
            pool.append(task)
    if not pool:
        logger.info("project=%s round skipped: no unlabelled task left", project_id)
        return {"status": "skipped", "reason": "no unlabelled task left"}

    round_no = store.next_round_no(project_id)
    seed = [settings.seed, project_id, round_no]
    rng = np.random.default_rng(seed)
    k = settings.seed_size if bundle is None else settings.batch_size
    texts_by_key = {key: [task_text(task["data"], key) for task in pool] for key in spec.value_keys}
    strategy = settings.strategy
    # Greedy strategies rank by their own measure; the randomized ones use the configured one.
    measure = strategy if strategy in GREEDY_STRATEGIES else settings.uncertainty

    def score(positions):
        return pool_uncertainty(spec, bundle, texts_by_key, np.asarray(positions), measure)

    started = time.perf_counter()
    selection = select(strategy, score if bundle is not None else None, len(pool), k, rng,
                       eps=settings.eps, tau=settings.tau)
    selection_seconds = time.perf_counter() - started
    chosen = [pool[int(position)] for position in selection.indices]

    predictions, usage = _teacher_predictions(services, project_id, spec, chosen, model_version)
    if predictions:
        client.import_predictions(project_id, predictions)
        client.set_model_version(project_id, model_version)
    first_rank = max(picked.values(), default=0) + 1
    client.set_task_fields(project_id, {task["id"]: {RANK_KEY: first_rank + offset}
                                        for offset, task in enumerate(chosen)})
    view_id = client.ensure_queue_view(project_id, RANK_KEY)
    _secure_webhooks(services, project_id)

    record = {
        "seed": seed,
        "strategy": strategy,
        "student_version": model_version,
        "pool_size": len(pool),
        "selection": selection.to_dict(),
        "selection_seconds": round(selection_seconds, 4),
        "task_ids": [task["id"] for task in chosen],
        "prelabelled": len(predictions),
        "teacher_usage": usage,
        "view_id": view_id,
    }
    store.record_round(project_id, round_no, record, [task["id"] for task in chosen])
    logger.info("project=%s round %s picked %s tasks (scored %s, acceptance %.3f), %s pre-labelled",
                project_id, round_no, len(chosen), selection.n_scored, selection.acceptance_rate, len(predictions))
    return {"status": "done", "round": round_no, **record}


def _secure_webhooks(services, project_id: int) -> None:
    """Add this backend's Basic auth to the webhook Label Studio sends annotation events through.

    Label Studio 1.23 sends Basic auth on /health, /setup, /predict and START_TRAINING, but not on
    event webhooks, which would then be rejected with 401.
    """
    settings = services.settings
    backend_url = services.store.backend_url(project_id)
    if not settings.basic_auth_user or not backend_url:
        return
    from .server.auth import basic_auth_header

    header = basic_auth_header(settings.basic_auth_user, settings.basic_auth_pass)
    services.label_studio.secure_webhooks(project_id, backend_url, {"Authorization": header})


def _teacher_predictions(services, project_id, spec, chosen, model_version):
    teacher = services.teacher
    if teacher is None:
        logger.warning("project=%s teacher not configured (OPENAI_BASE_URL unset): tasks are queued "
                       "without pre-labels", project_id)
        return [], {}
    from .teacher import TeacherConfigError

    budget = TeacherBudget(services.settings)
    annotations = services.store.annotations(project_id)
    results = {task["id"]: [] for task in chosen}
    usage = {}
    for block in spec.blocks:
        items = [(task["id"], task_text(task["data"], block.value_key)) for task in chosen]
        examples = _few_shot_examples(block, annotations, services.settings.teacher_examples)
        try:
            answers, unsent = label_within_budget(teacher, budget, project_id, items, block, examples)
        except TeacherConfigError as exc:
            # Retrying cannot fix a key or model name, so the picks are queued without pre-labels.
            logger.error("project=%s teacher configuration error, tasks queued without pre-labels: %s", project_id, exc)
            break
        usage[block.from_name] = dict(teacher.usage_of(answers), unsent=unsent)
        if unsent:
            logger.warning("project=%s teacher budget spent (%s): %s of %s tasks queued without a %r pre-label",
                           project_id, budget.spent(), unsent, len(items), block.from_name)
        for answer in answers:
            if not answer.valid:
                logger.info("project=%s task=%s teacher answer rejected: %s", project_id, answer.task_id, answer.error)
                continue
            results[answer.task_id].append({
                "from_name": block.from_name,
                "to_name": block.to_name,
                "type": "choices",
                "value": {"choices": list(answer.labels)},
            })
    # The teacher reports no calibrated confidence, so these predictions carry no score.
    predictions = [
        {"task": task_id, "result": result, "model_version": model_version}
        for task_id, result in results.items()
        if result
    ]
    return predictions, usage
