from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0010_redispatch_backoff'),
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
    ]
