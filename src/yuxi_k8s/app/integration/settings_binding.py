"""Bind the application's ``Config`` object to the kit's store: load, save, push.

Yuxi-Know builds one ``Config`` at import (``yuxi/config/app.py``) and every
module holds that object. The binding keeps the object and changes what it
holds:

- **load**: the persisted fields (those ``Config.save()`` writes) are set from the
  store's config keys, missing keys from the field defaults; the provider table
  is rebuilt from the built-in catalogue, the ``model_names`` scope (edited
  built-ins, via the app's own ``_load_model_names``) and the ``custom`` scope
  (via ``_load_custom_model_providers``); then the app's ``_handle_environment``
  recomputes what it derives (provider status, available providers).
- **save**: ``Config.save``, ``_save_models_to_file`` and ``_save_custom_providers``
  write through to the store what *this replica* changed since it last applied
  the store (a three-way comparison, so a change another replica made and this
  one has not seen yet is never written back over). Each write names the version
  this replica applied; on a conflict (another replica wrote the same key
  meanwhile) it is logged and written again without the version check: both
  saves happened, this one last; nothing is dropped silently. If the store cannot be
  reached the in-memory object is put back to what the store held and the save
  raises, so the caller sees an error and no replica serves a setting nobody
  stored.
- **push**: every change another replica makes reaches this one through the
  store's change feed; it is applied field by field, leaving alone a field this
  replica has changed and not saved yet (that save then wins, as above).
- **check**: what the application cannot use (:mod:`yuxi_k8s.state.app_settings`:
  a value of another type than its field's, a provider whose ``env`` is not a
  model-provider key variable) is refused before a save writes anything: the
  object is put back and :class:`SettingsRefusedError` says why (the API answers
  422). A row already in the store that fails the check (written by an older kit,
  or by hand) is skipped on load with one log line: the replica starts and serves.

``save_dir`` and ``model_dir`` come from each process's environment (SAVE_DIR,
MODEL_DIR) and are never shared.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from yuxi_k8s.state import ConflictError, DistributedConfig, InvalidValueError, StateError, StateView
from yuxi_k8s.state.app_settings import check_provider, check_setting

log = logging.getLogger("yuxi_k8s.app.settings")

LOCAL_FIELDS = frozenset({"save_dir", "model_dir"})
_UNSET = object()


class SettingsSaveError(RuntimeError):
    """A save could not reach the store; the replica's settings were put back to the store's."""


class SettingsRefusedError(ValueError):
    """A save held a value the application cannot use; nothing was written, the replica's
    settings were put back to the store's. str() is one line naming the key or provider."""


class SettingsBinding:
    def __init__(self, store: DistributedConfig, config: Any, *, replica: str) -> None:
        self.store = store
        self.config = config
        self.cls = type(config)
        self.replica = replica
        self._lock = threading.RLock()
        self._applied = StateView()
        # What the object held right after the last apply, in the app's own form: a field or
        # provider that differs from these was changed here and is not saved yet ("dirty").
        self._applied_fields: dict[str, Any] = {}
        self._applied_custom: dict[str, dict[str, Any]] = {}
        self._applied_builtin: dict[str, dict[str, Any]] = {}
        defaults = self.cls.model_construct()
        self._fields = [
            name
            for name, info in self.cls.model_fields.items()
            if not info.exclude and name not in LOCAL_FIELDS
        ]
        self._defaults = {name: getattr(defaults, name) for name in self._fields}
        self._unsubscribe: Callable[[], None] | None = None
        self._skipped: set[tuple[str, int]] = set()  # stored rows already reported as unusable

    # --- what the store holds, as the app's values ---------------------------------------
    def _usable(self, what: str, version: int, check: Callable[[], None]) -> bool:
        """False for a stored row the application cannot use; said once per row version."""
        try:
            check()
        except InvalidValueError as exc:
            if (what, version) not in self._skipped:
                self._skipped.add((what, version))
                log.error("stored %s (version %s) skipped, the replica goes on without it: %s",
                          what, version, exc)  # fmt: skip
            return False
        return True

    def _usable_config(self, view: StateView) -> dict[str, Any]:
        return {
            key: entry.value
            for key, entry in view.config.items()
            if self._usable(f"setting {key}", entry.version, partial(check_setting, key, entry.value))
        }

    def _usable_providers(self, view: StateView, scope: str) -> dict[str, dict[str, Any]]:
        return {
            name: record
            for name, record in view.provider_records(scope).items()
            if self._usable(
                f"provider {scope}/{name}",
                view.providers[(scope, name)].version,
                partial(check_provider, scope, name, record),
            )
        }

    def _wanted_fields(self, stored: dict[str, Any]) -> dict[str, Any]:
        return {name: stored[name] if name in stored else self._defaults[name] for name in self._fields}

    def _providers_from(self, view: StateView) -> dict[str, Any]:
        """The provider table the app would build from these records (via its own loaders)."""
        scratch = self.cls.model_construct()  # no __init__: no file read; model_names = the catalogue
        self.cls._load_model_names(scratch, self._usable_providers(view, "model_names"))
        self.cls._load_custom_model_providers(scratch, self._usable_providers(view, "custom"))
        return dict(scratch.model_names)

    def _custom_now(self) -> dict[str, dict[str, Any]]:
        return {name: info.model_dump() for name, info in self.config.model_names.items() if info.custom}

    # --- load and push -----------------------------------------------------------------
    def apply(self, view: StateView | None = None, *, initial: bool = False) -> list[str]:
        """Make the Config object hold *view* (default: the store now); returns what changed.

        ``initial``: take everything from *view*, local changes included (start-up, and
        putting the object back after a failed save).
        """
        view = self.store.snapshot() if view is None else view
        with self._lock:
            changed: list[str] = []
            applied: dict[str, Any] = {}
            stored = self._usable_config(view)
            for name, value in self._wanted_fields(stored).items():
                current = getattr(self.config, name, _UNSET)
                base = self._applied_fields.get(name, _UNSET)
                if not initial and current != base:
                    applied[name] = base  # changed here, not saved yet: the save wins
                    continue
                if current != value:
                    setattr(self.config, name, value)
                    changed.append(name)
                applied[name] = value
            for key, value in stored.items():  # keys of other versions: set as the app does
                if key not in self._fields and key not in LOCAL_FIELDS and hasattr(self.config, key):
                    setattr(self.config, key, value)
            if initial or self._custom_now() == self._applied_custom:
                providers = self._providers_from(view)
                if providers != self.config.model_names:
                    self.config.model_names = providers  # one reference swap: readers see old or new
                    changed.append("model_names")
                self._applied_custom = self._custom_now()
                self._applied_builtin = {
                    n: info.model_dump() for n, info in self.config.model_names.items() if not info.custom
                }
            self._derive()
            self._applied = view
            self._applied_fields = applied
        if changed and not initial:
            log.info("settings from another replica applied: %s", ", ".join(changed))
        return changed

    def _derive(self) -> None:
        try:
            self.config._handle_environment()
        except ValueError as exc:  # e.g. no provider key: keep serving, say why
            log.error("settings applied, but the application rejects them: %s", exc)

    def on_change(self, key: str) -> None:
        """Subscriber of the store: re-apply whatever changed (runs on the store's callback thread)."""
        try:
            self.apply()
        except StateError as exc:
            log.warning("could not apply a change from another replica (%s): %s", key, exc)

    def start(self) -> None:
        self.apply(initial=True)
        self._unsubscribe = self.store.subscribe(self.on_change)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    # --- save --------------------------------------------------------------------------
    def _write(self, key: str, write: Callable[[int | None], int], expected: int | None) -> int:
        """Write naming the version this replica applied; if another replica wrote the same key
        meanwhile, say so and write again unconditionally: both saves happened, this one last."""
        try:
            return write(expected)
        except ConflictError as exc:
            log.warning(
                "%s was changed by another replica meanwhile (now version %s); this replica's save "
                "is applied after it",
                key,
                exc.actual,
            )
            return write(None)

    def _fail(self, exc: Exception) -> SettingsSaveError:
        self.apply(self._applied, initial=True)  # put the object back to what the store held
        return SettingsSaveError(f"settings not saved, the store is unavailable: {exc}")

    def _refuse(
        self, fields: dict[str, Any] | None = None, scope: str = "", providers: dict[str, Any] | None = None
    ) -> None:
        """Before a save writes anything: a value the application cannot use puts the object
        back to what the store held and raises SettingsRefusedError."""
        try:
            for name, value in (fields or {}).items():
                check_setting(name, value)
            for name, record in (providers or {}).items():
                check_provider(scope, name, record)
        except InvalidValueError as exc:
            self.apply(self._applied, initial=True)
            log.warning("settings not saved: %s", exc)
            raise SettingsRefusedError(f"settings not saved: {exc}") from None

    def _changed_fields(self) -> dict[str, Any]:
        return {
            name: value
            for name in self._fields
            if (value := getattr(self.config, name)) != self._applied_fields.get(name, _UNSET)
        }

    def save_settings(self) -> None:
        """``Config.save``: write the persisted fields this replica changed."""
        with self._lock:
            changed = self._changed_fields()
            self._refuse(fields=changed)
            try:
                for name, value in changed.items():
                    entry = self._applied.config.get(name)
                    if value == self._defaults[name]:
                        if entry is not None:
                            self._write(name, partial(self._delete, name), entry.version)
                    else:
                        expected = entry.version if entry is not None else 0
                        self._write(name, partial(self._set, name, value), expected)
                    self._applied_fields[name] = value
            except (StateError, SettingsSaveError) as exc:
                raise self._fail(exc) from None
        self._refresh()

    def _set(self, key: str, value: Any, expected: int | None) -> int:
        return self.store.set(key, value, expected_version=expected, updated_by=self.replica)

    def _delete(self, key: str, expected: int | None) -> int:
        self.store.delete(key, expected_version=expected)
        return 0

    def save_provider_overrides(self, provider: str | None = None) -> None:
        """``Config._save_models_to_file``: built-in providers edited here go to scope model_names."""
        names = [provider] if provider else list(self.config.model_names)
        with self._lock:
            edited = {
                name: record
                for name in names
                if (info := self.config.model_names.get(name)) is not None and not info.custom
                and (record := info.model_dump()) != self._applied_builtin.get(name)
            }  # fmt: skip
            self._refuse(scope="model_names", providers=edited)
            try:
                for name, record in edited.items():
                    entry = self._applied.providers.get(("model_names", name))
                    expected = entry.version if entry is not None else 0
                    self._write(f"provider {name}", partial(self._put, "model_names", name, record), expected)
            except (StateError, SettingsSaveError) as exc:
                raise self._fail(exc) from None
        self._refresh()

    def save_custom_providers(self) -> None:
        """``Config._save_custom_providers``: the custom scope becomes what this replica holds."""
        with self._lock:
            now = self._custom_now()
            self._refuse(
                scope="custom", providers={n: r for n, r in now.items() if r != self._applied_custom.get(n)}
            )
            try:
                for name, record in now.items():
                    if record == self._applied_custom.get(name):
                        continue
                    entry = self._applied.providers.get(("custom", name))
                    expected = entry.version if entry is not None else 0
                    self._write(f"provider {name}", partial(self._put, "custom", name, record), expected)
                for name in sorted(set(self._applied_custom) - set(now)):
                    gone = self._applied.providers.get(("custom", name))
                    self._write(
                        f"provider {name}",
                        partial(self._drop, "custom", name),
                        gone.version if gone else None,
                    )
                self._applied_custom = now
            except (StateError, SettingsSaveError) as exc:
                raise self._fail(exc) from None
        self._refresh()

    def _put(self, scope: str, name: str, record: dict[str, Any], expected: int | None) -> int:
        return self.store.put_provider(
            name, record, scope=scope, expected_version=expected, updated_by=self.replica
        )

    def _drop(self, scope: str, name: str, expected: int | None) -> int:
        self.store.delete_provider(name, scope=scope, expected_version=expected)
        return 0

    def _refresh(self) -> None:
        """After a save: take the store's view (our writes and anything skipped while dirty)."""
        try:
            self.apply()
        except StateError as exc:
            log.warning("saved, but could not re-read the store: %s", exc)

    # --- patching the class --------------------------------------------------------------
    def install(self) -> None:
        """Route the Config class's save methods through this binding (the app's one object uses them)."""
        binding = self

        def save(_self: Any) -> None:
            binding.save_settings()

        def save_models(_self: Any, provider_name: str | None = None) -> None:
            binding.save_provider_overrides(provider_name)

        def save_custom(_self: Any) -> None:
            binding.save_custom_providers()

        self.cls.save = save
        self.cls._save_models_to_file = save_models
        self.cls._save_custom_providers = save_custom


REQUIRED_CONFIG_ATTRIBUTES = (
    "save",
    "_save_models_to_file",
    "_save_custom_providers",
    "_load_model_names",
    "_load_custom_model_providers",
    "_handle_environment",
    "model_fields",
    "model_construct",
)
