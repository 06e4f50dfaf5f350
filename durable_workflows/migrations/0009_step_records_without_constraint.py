import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0008_forked_from'),
    ]

    operations = [
        migrations.AlterField(
            model_name='steprecord',
            name='instance',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='durable_workflows.workflowinstance', verbose_name='instance'),
        ),
    ]
