"""The `compliance` group, with the review permissions; and on PostgreSQL, checkpoints are
append-only like the audit rows (a trigger refuses UPDATE and DELETE)."""

from django.db import migrations

PERMISSIONS = {
    "view_review": "Can see the compliance review pages",
    "manage_legal_hold": "Can place and release legal holds",
}

CHECKPOINT_TRIGGER = """
CREATE OR REPLACE FUNCTION compliance_checkpoint_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'compliance_checkpoint is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER compliance_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON compliance_checkpoint
    FOR EACH ROW EXECUTE FUNCTION compliance_checkpoint_append_only();
"""
DROP_CHECKPOINT_TRIGGER = """
DROP TRIGGER IF EXISTS compliance_checkpoint_append_only ON compliance_checkpoint;
DROP FUNCTION IF EXISTS compliance_checkpoint_append_only();
"""


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); create them here so
    # that the group can hold them now. post_migrate then finds them and leaves them be.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="compliance", model="reviewaccess")
    group, _ = Group.objects.get_or_create(name="compliance")
    for codename, name in PERMISSIONS.items():
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        group.permissions.add(permission)


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="compliance").delete()


def install_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # A plain cursor: schema_editor.execute() would read the '%' of RAISE as placeholders.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(CHECKPOINT_TRIGGER)


def uninstall_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(DROP_CHECKPOINT_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_group, delete_group),
        migrations.RunPython(install_trigger, uninstall_trigger),
    ]
