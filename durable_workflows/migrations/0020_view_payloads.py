from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("durable_workflows", "0019_priority_delay_debounce"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="workflowinstance",
            options={
                "base_manager_name": "objects",
                "ordering": ["-created_at"],
                "permissions": [
                    ("cancel_workflowinstance", "Can cancel workflow instances"),
                    ("view_payloads", "Can see stored values in plain while they are encrypted"),
                ],
                "verbose_name": "workflow instance",
                "verbose_name_plural": "workflow instances",
            },
        ),
    ]
