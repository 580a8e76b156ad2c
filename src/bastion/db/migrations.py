"""``bastion migrate``: Alembic with one branch for the platform and one per app.

The platform's revisions live in this package (branch ``bastion``); an app's live
in its own folder (branch named after the app). ``up`` applies every head, so a
new bastion release and a new app revision are applied by the same command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from bastion.db.database import Database
from bastion.db.tables import platform_metadata

_HERE = Path(__file__).parent / "migrations"
#: The folder of bastion's own revisions (branch ``bastion``).
PLATFORM_MIGRATIONS = _HERE / "versions"
PLATFORM_BRANCH = "bastion"


@dataclass(frozen=True)
class MigrationStatus:
    """``current``: the database's recorded heads; ``pending``: revisions not applied yet."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        return not self.pending


class Migrator:
    """Runs Alembic commands for one database, one app branch and the platform branch.

    Args:
        database: Where to apply migrations.
        branch: The app's branch label (its name).
        versions_dir: The app's revision folder, or None for an app without tables.
        metadata: The app's MetaData, for autogenerate.
        unmodelled: Tells the tables autogenerate must leave alone although no model
            declares them (a search index's own tables, say).
    """

    def __init__(
        self,
        database: Database,
        *,
        branch: str,
        versions_dir: Path | None,
        metadata: MetaData | None,
        unmodelled: Callable[[str], bool] | None = None,
    ) -> None:
        self.database = database
        self.branch = branch
        self.versions_dir = versions_dir
        self.metadata = metadata
        self.unmodelled = unmodelled

    def config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(_HERE))
        config.set_main_option("path_separator", "os")
        locations = [str(PLATFORM_MIGRATIONS)]
        if self.versions_dir is not None:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            locations.append(str(self.versions_dir))
        config.set_main_option("version_locations", os.pathsep.join(locations))
        config.attributes["engine"] = self.database.write_engine
        metadatas = [platform_metadata] + ([self.metadata] if self.metadata is not None else [])
        config.attributes["metadata"] = metadatas
        platform_tables = set(platform_metadata.tables)

        def include_object(
            obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
        ) -> bool:
            # Autogenerate writes only the app's tables into the app's revisions.
            table = obj if type_ == "table" else getattr(obj, "table", None)
            table_name = getattr(table, "name", name)
            if self.unmodelled is not None and table_name and self.unmodelled(table_name):
                return False
            return table_name not in platform_tables and table_name != "alembic_version"

        config.attributes["include_object"] = include_object
        return config

    def upgrade(self, target: str = "heads") -> None:
        command.upgrade(self.config(), target)

    def downgrade(self, target: str | None = None) -> None:
        """Step the app branch back by one revision, or to ``target``."""
        command.downgrade(self.config(), target or f"{self.branch}@-1")

    def make(self, message: str, *, autogenerate: bool = True) -> str:
        """Write a new app revision; returns its file path."""
        if self.versions_dir is None:
            raise ValueError("this app declares no migrations folder (App(migrations=...))")
        config = self.config()
        script = ScriptDirectory.from_config(config)
        has_branch = any(
            self.branch in (rev.branch_labels or ()) for rev in script.walk_revisions()
        )
        own = [
            rev
            for rev in script.walk_revisions()
            if self.branch in (rev.branch_labels or ())
            or str(rev.revision).startswith(f"{self.branch}_")
        ]
        kwargs: dict[str, Any] = {
            "version_path": str(self.versions_dir),
            "rev_id": f"{self.branch}_{len(own) + 1:04d}",
        }
        if has_branch:
            kwargs["head"] = f"{self.branch}@head"
        else:
            kwargs.update(
                head="base", branch_label=self.branch, depends_on=f"{PLATFORM_BRANCH}@head"
            )
        revision = command.revision(config, message=message, autogenerate=autogenerate, **kwargs)
        scripts = revision if isinstance(revision, list) else [revision]
        return str(scripts[0].path) if scripts and scripts[0] is not None else ""

    def status(self) -> MigrationStatus:
        script = ScriptDirectory.from_config(self.config())
        with self.database.write_engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
        # A recorded head stands for all of its ancestors (depends_on included).
        applied = (
            {rev.revision for rev in script.iterate_revisions(current, "base")}
            if current
            else set()
        )
        pending = [rev.revision for rev in script.walk_revisions() if rev.revision not in applied]
        return MigrationStatus(
            current=tuple(sorted(current)),
            heads=tuple(sorted(script.get_heads())),
            pending=tuple(sorted(pending)),
        )
