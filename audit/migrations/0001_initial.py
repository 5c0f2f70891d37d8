"""The audit trail becomes its own app: AuditEvent and AuditChainHead come from approvals,
Checkpoint from compliance. State only: the tables keep their names and their rows (db_table),
so the chain, its hashes and the append-only triggers of approvals 0004 and compliance 0002 stay
exactly as they were. approvals 0009 and compliance 0004 drop the models from their own state
after this one.

The content types (and so the permissions and admin log entries that point at them) move along,
when they exist: on a fresh database they are created later, by post_migrate."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import audit.kinds

MOVED = [("approvals", "auditevent"), ("approvals", "auditchainhead"), ("compliance", "checkpoint")]


def move_content_types(apps, schema_editor, *, backwards=False):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for old_app, model in MOVED:
        source, target = ("audit", old_app) if backwards else (old_app, "audit")
        # A target that exists already (post_migrate of an earlier, partial run) keeps its rows.
        if not ContentType.objects.using(db).filter(app_label=target, model=model).exists():
            ContentType.objects.using(db).filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, backwards=True)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("approvals", "0008_policies"),
        ("compliance", "0003_search_indexes"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="AuditChainHead",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("seq", models.PositiveBigIntegerField(default=0)),
                        ("row_hash", models.CharField(max_length=64)),
                    ],
                    options={
                        "db_table": "approvals_auditchainhead",
                    },
                ),
                migrations.CreateModel(
                    name="Checkpoint",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("seq", models.PositiveBigIntegerField(unique=True)),
                        ("row_hash", models.CharField(max_length=64)),
                        ("sealed_at", models.DateTimeField()),
                        ("public_key", models.CharField(help_text="Raw Ed25519 public key, hex.", max_length=64)),
                        ("signature", models.CharField(help_text="Ed25519 signature, hex.", max_length=128)),
                    ],
                    options={
                        "db_table": "compliance_checkpoint",
                        "ordering": ["seq"],
                        "get_latest_by": "seq",
                    },
                ),
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("kind", models.CharField(choices=audit.kinds.choices, max_length=32)),
                        ("actor_label", models.CharField(blank=True, max_length=150)),
                        ("payload", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("seq", models.PositiveBigIntegerField(unique=True)),
                        ("payload_hash", models.CharField(max_length=64)),
                        ("content_hash", models.CharField(max_length=64)),
                        ("prev_hash", models.CharField(max_length=64)),
                        ("row_hash", models.CharField(max_length=64)),
                        ("payload_purged_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "request",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="audit",
                                to="approvals.approvalrequest",
                            ),
                        ),
                        (
                            "session",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="approvals.realtimesession",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "approvals_auditevent",
                        "ordering": ["seq"],
                        "indexes": [
                            models.Index(fields=["request", "created_at"], name="approvals_a_request_f2f972_idx"),
                            models.Index(fields=["kind", "created_at"], name="approvals_a_kind_150c77_idx"),
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
