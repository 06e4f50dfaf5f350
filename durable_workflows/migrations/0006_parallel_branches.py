from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('durable_workflows', '0005_family_pending'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='steprecord',
            options={'ordering': ['instance', 'branch', 'position'], 'verbose_name': 'step', 'verbose_name_plural': 'steps'},
        ),
        migrations.AddField(
            model_name='alarm',
            name='branch',
            field=models.CharField(blank=True, default='', help_text='The parallel branch of that position, if any.', max_length=255, verbose_name='branch'),
        ),
        migrations.AddField(
            model_name='steprecord',
            name='branch',
            field=models.CharField(blank=True, default='', help_text='The parallel branch it ran in, such as 3:1 (branch 1 of wf.parallel at position 3); empty for the workflow function itself.', max_length=255, verbose_name='branch'),
        ),
        migrations.AlterField(
            model_name='steprecord',
            name='position',
            field=models.PositiveIntegerField(help_text='Order in the run (or in its branch); how a replay finds the step.', verbose_name='position'),
        ),
        migrations.AddConstraint(
            model_name='steprecord',
            constraint=models.UniqueConstraint(fields=('instance', 'branch', 'position'), name='dw_step_unique_slot'),
        ),
        # Dropped only once the new constraint holds, so that no moment is without one.
        migrations.RemoveConstraint(
            model_name='steprecord',
            name='dw_step_unique_position',
        ),
    ]
