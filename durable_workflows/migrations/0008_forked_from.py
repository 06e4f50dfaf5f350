from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0007_markers'),
    ]

    operations = [
        migrations.AddField(
            model_name='workflowinstance',
            name='forked_from',
            field=models.CharField(blank=True, help_text='The instance this one was forked from (client.fork), to repair it.', max_length=255, null=True, verbose_name='forked from'),
        ),
    ]
