from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0006_parallel_branches'),
    ]

    operations = [
        migrations.AlterField(
            model_name='steprecord',
            name='kind',
            field=models.CharField(choices=[('step', 'Step'), ('sleep', 'Sleep'), ('event', 'Event wait'), ('start_child', 'Child start'), ('child', 'Child wait'), ('patch', 'Patch marker'), ('parallel', 'Parallel branches')], default='step', max_length=16, verbose_name='kind'),
        ),
    ]
