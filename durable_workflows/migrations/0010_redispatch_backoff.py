from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0009_step_records_without_constraint'),
    ]

    operations = [
        migrations.AddField(
            model_name='workflowinstance',
            name='redispatches',
            field=models.PositiveIntegerField(default=0, help_text='How many times recovery sent its task again since it last ran; each wait for the next is twice as long, so a backlog does not feed itself.', verbose_name='sent again'),
        ),
    ]
