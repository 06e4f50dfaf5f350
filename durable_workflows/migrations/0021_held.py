from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("durable_workflows", "0020_view_payloads"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowinstance",
            name="held",
            field=models.BooleanField(db_default=False, default=False, help_text="Paused by an operator (client.pause): nothing starts or resumes it until client.resume.", verbose_name="held"),
        ),
        migrations.AddField(
            model_name="workflowinstance",
            name="held_reason",
            field=models.TextField(blank=True, db_default="", default="", help_text="Why it was paused, as given to client.pause.", verbose_name="hold reason"),
        ),
    ]
