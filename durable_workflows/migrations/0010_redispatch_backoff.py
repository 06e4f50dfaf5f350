from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0009_step_records_without_constraint'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='alarm',
            options={'base_manager_name': 'objects', 'ordering': ['fire_at'], 'verbose_name': 'alarm', 'verbose_name_plural': 'alarms'},
        ),
        migrations.AlterModelOptions(
            name='event',
            options={'base_manager_name': 'objects', 'ordering': ['instance', 'id'], 'verbose_name': 'event', 'verbose_name_plural': 'events'},
        ),
        migrations.AlterModelOptions(
            name='inboxmessage',
            options={'base_manager_name': 'objects', 'ordering': ['instance', 'id'], 'verbose_name': 'received event', 'verbose_name_plural': 'received events'},
        ),
        migrations.AlterModelOptions(
            name='steprecord',
            options={'base_manager_name': 'objects', 'ordering': ['instance', 'branch', 'position'], 'verbose_name': 'step', 'verbose_name_plural': 'steps'},
        ),
        migrations.AlterModelOptions(
            name='workflowinstance',
            options={'base_manager_name': 'objects', 'ordering': ['-created_at'], 'permissions': [('cancel_workflowinstance', 'Can cancel workflow instances')], 'verbose_name': 'workflow instance', 'verbose_name_plural': 'workflow instances'},
        ),
        migrations.AddField(
            model_name='workflowinstance',
            name='redispatches',
            field=models.PositiveIntegerField(db_default=0, default=0, help_text='How many times recovery sent its task again since it last ran; each wait for the next is twice as long, so a backlog does not feed itself.', verbose_name='sent again'),
        ),
    ]
